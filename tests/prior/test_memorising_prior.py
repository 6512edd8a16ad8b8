"""A prior overfit on 4 images copies them and the memorisation judge flags it; a prior
trained on shuffled noise does not copy and is not flagged (ablate.models.code_prior through a
tiny autoencoder's decoder, judged by ablate.evaluate.memorisation in pixels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ablate.evaluate.memorisation import memorisation
from ablate.models import build_model
from ablate.models.code_prior import CodePrior, CodePriorConfig

SIDE = 16  # px; the tiny preset halves once: 8x8 = 64 codes of a 64-code book


def _decode(ae, codes: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return ae.decode_codes(codes.view(-1, SIDE // 2, SIDE // 2)).clamp(0, 1).flatten(1).numpy()


def _train_prior(batches, steps: int = 150) -> CodePrior:
    torch.manual_seed(0)
    prior = CodePrior(CodePriorConfig(vocab=64, n_positions=64, layers=2, heads=2, width=64, pkeep=1.0))
    opt = torch.optim.Adam(prior.parameters(), lr=1e-2)
    for step in range(steps):
        loss = prior.loss(batches(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return prior


@pytest.fixture(scope="module")
def setting():
    torch.manual_seed(1)
    ae = build_model("tiny", SIDE).eval()  # a fixed decoder: images are what it makes of code grids
    g = torch.Generator().manual_seed(2)
    train_codes = torch.randint(64, (4, 64), generator=g)
    test_codes = torch.randint(64, (40, 64), generator=g)  # unseen images from the same distribution
    return ae, train_codes, test_codes


def test_a_prior_overfit_on_four_images_is_flagged_as_memorising(setting):
    ae, train_codes, test_codes = setting
    prior = _train_prior(lambda step: train_codes)
    samples = prior.sample(64, generator=torch.Generator().manual_seed(3))
    copies = sum(bool((s == train_codes).all(1).any()) for s in samples)
    assert copies >= 48  # it reproduces its four training grids
    m = memorisation(_decode(ae, samples), _decode(ae, train_codes), _decode(ae, test_codes))
    assert m.memorising and m.share >= 0.75 and m.p_value < 1e-6
    assert m.closest[0].distance == pytest.approx(0.0, abs=1e-9)


def test_a_prior_trained_on_shuffled_noise_is_not_flagged(setting):
    ae, train_codes, test_codes = setting
    g = torch.Generator().manual_seed(4)
    prior = _train_prior(lambda step: torch.randint(64, (4, 64), generator=g))  # fresh noise every step
    samples = prior.sample(64, generator=torch.Generator().manual_seed(5))
    assert not any(bool((s == train_codes).all(1).any()) for s in samples)
    m = memorisation(_decode(ae, samples), _decode(ae, train_codes), _decode(ae, test_codes))
    assert not m.memorising
    assert m.share < 2 * m.expected_share
