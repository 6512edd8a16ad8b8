"""Drawing a trial's samples (ablate.prior.draw): chunk k holds the same images however the
draw was split (the trial's own draw, then `ablate sample`), only missing chunks are drawn,
the contact sheet is written once, and a decoded sample is the autoencoder's decoding of the
prior's codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ablate.data.sample_store import chunk_numbers, read_samples
from ablate.models.code_prior import CodePrior, CodePriorConfig
from ablate.models.presets import build_model
from ablate.prior.draw import CHUNK, DrawRequest, draw_samples
from ablate.prior.prior_file import save_prior
from tests.helpers.checkpoints import TINY_32PX_SPEC


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from ablate.models.checkpoint import write_checkpoint

    root = tmp_path_factory.mktemp("draw")
    torch.manual_seed(0)
    ae = build_model("tiny", 32, {})
    (root / "ae").mkdir()
    write_checkpoint(root / "ae", model_state=ae.state_dict(), optimizer_state={}, step=1, spec=TINY_32PX_SPEC)
    prior = CodePrior(CodePriorConfig(vocab=ae.arch.n_embed, n_positions=16 * 16, layers=1, heads=2, width=16))
    (root / "prior").mkdir()
    save_prior(root / "prior", prior, (16, 16), step=5, loss=1.0, val_loss=1.1, seed=7)
    return root


def _request(root, folder, total):
    return DrawRequest(folder=str(folder), prior=str(root / "prior"), autoencoder=str(root / "ae"), total=total)


def test_chunks_are_the_same_however_the_draw_is_split(checkpoints, tmp_path):
    at_once, in_two = tmp_path / "once", tmp_path / "two"
    assert draw_samples(_request(checkpoints, at_once, CHUNK + 5))["drawn"] == CHUNK + 5
    first = draw_samples(_request(checkpoints, in_two, CHUNK))
    sheet = (in_two / "contact_sheet.png").read_bytes()
    again = draw_samples(_request(checkpoints, in_two, CHUNK + 5))  # `ablate sample --n` later
    assert (first["drawn"], again["drawn"], again["total"]) == (CHUNK, 5, CHUNK + 5)
    assert chunk_numbers(in_two) == [0, 1] and (in_two / "contact_sheet.png").read_bytes() == sheet
    a, b = read_samples(at_once), read_samples(in_two)
    assert np.array_equal(a.images, b.images) and a.ids == b.ids
    assert draw_samples(_request(checkpoints, in_two, CHUNK))["drawn"] == 0  # never fewer, never replaced
    assert len({im.tobytes() for im in a.images}) == len(a.images)  # a random prior: every draw differs


def test_a_sample_is_the_decoding_of_the_priors_codes(checkpoints, tmp_path):
    from ablate.data.sample_store import chunk_seed
    from ablate.models.checkpoint import read_checkpoint, rebuild_model
    from ablate.prior.prior_file import load_prior

    draw_samples(_request(checkpoints, tmp_path, 3))
    prior, saved = load_prior(str(checkpoints / "prior"))
    assert saved["seed"] == 7 and saved["grid"] == [16, 16]
    codes = prior.sample(3, generator=torch.Generator().manual_seed(chunk_seed(7, 0)))
    ae, _ = rebuild_model(read_checkpoint(str(checkpoints / "ae")))
    with torch.no_grad():
        expected = (ae.decode_codes(codes.view(3, 16, 16)).clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round()
    s = read_samples(tmp_path)
    assert np.array_equal(s.images, expected.astype(np.uint8))
    assert list(s.table["prior_step"]) == [5, 5, 5] and list(s.table["seed"]) == [chunk_seed(7, 0)] * 3
