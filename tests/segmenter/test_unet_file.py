"""The segmenter's weights file (ablate.segmenter.unet_file): saved, loaded and used to predict; a missing file named with the command that makes it."""

from __future__ import annotations

import pytest
import torch

from ablate.segmenter.cli import _DEFAULT_OUT
from ablate.segmenter.protocol import Segmenter
from ablate.segmenter.unet import UNetSegmenter, unet_logits
from ablate.segmenter.unet_file import DEFAULT_WEIGHTS, load_segmenter, save_segmenter
from tests.helpers.segmentation import synthetic_vessel_batch, tiny_unet

pytestmark = pytest.mark.usefixtures("one_thread")


def test_save_load_round_trip_and_predict(tmp_path):
    m = tiny_unet(1)
    m.train()(torch.randn(2, 3, 32, 32))  # non-trivial BatchNorm running stats
    path = save_segmenter(tmp_path / "my_unet.pth", m, {"base": 4, "levels": 3}, size=32, trained_on="synthetic",
                          metrics={"dice": 0.5, "auc": 0.9})
    seg = load_segmenter(path)
    assert isinstance(seg, UNetSegmenter) and isinstance(seg, Segmenter)
    assert seg.name == "unet:my_unet" and seg.threshold == 0.5 and seg.size == 32
    assert seg.metrics == {"dice": 0.5, "auc": 0.9} and seg.meta["trained_on"] == "synthetic"
    # The threshold chosen at training travels in the file, with its rule.
    path2 = save_segmenter(tmp_path / "t.pth", m, {"base": 4, "levels": 3}, size=32, trained_on="synthetic",
                           threshold=0.37, threshold_rule="max pooled Dice on the val split")
    seg2 = load_segmenter(path2)
    assert seg2.threshold == 0.37 and seg2.meta["threshold_rule"].startswith("max pooled Dice")
    for k, v in m.state_dict().items():
        assert torch.equal(seg.model.state_dict()[k], v), k
    assert not seg.model.training
    img, fov, _ = synthetic_vessel_batch(3, 32)
    p = seg.predict(img, fov)
    assert p.shape == (3, 32, 32) and p.min() >= 0 and p.max() <= 1 and (p[~fov] == 0).all()
    with torch.no_grad():
        assert torch.allclose(p, torch.sigmoid(unet_logits(m.eval(), img, fov)) * fov, atol=1e-6)
    # Other sizes are resampled to the training size and back.
    img64 = torch.nn.functional.interpolate(img, size=64, mode="bilinear")
    fov64 = torch.nn.functional.interpolate(fov[:, None].float(), size=64)[:, 0] > 0.5
    assert seg.predict(img64, fov64).shape == (3, 64, 64)
    assert seg.predict(img).shape == (3, 32, 32)  # FOV found by threshold


@pytest.mark.bad_input
def test_missing_file_names_it_and_the_command(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_segmenter(tmp_path / "nope.pth")
    assert "nope.pth" in str(e.value) and "ablate segmenter train --data" in str(e.value)
    torch.save({"something": 1}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a vessel segmenter file"):
        load_segmenter(tmp_path / "bad.pth")
    assert _DEFAULT_OUT == DEFAULT_WEIGHTS
