"""The vessel U-Net (ablate.segmenter.unet): shapes, parameters and gradients, the same standardisation in the data stream and in torch, a loss that falls on a fixed batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ablate.segmenter.inputs import fov_from_images
from ablate.segmenter.train import vessel_loss
from ablate.segmenter.unet import build_unet, fov_stats, fov_stats_numpy, standardize, unet_logits
from tests.helpers.segmentation import synthetic_vessel_batch, tiny_unet

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- U-Net

def test_unet_shapes_params_and_gradients():
    m = build_unet()  # the default: base 16, 4 levels
    assert 0.4e6 < sum(p.numel() for p in m.parameters()) < 0.6e6
    t = tiny_unet()
    x = torch.randn(2, 3, 24, 32, requires_grad=True)
    out = t(x)
    assert out.shape == (2, 24, 32)
    out.mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in t.parameters())
    with pytest.raises(ValueError, match="multiple of 4"):
        t(torch.randn(1, 3, 30, 32))
    # unet_logits pads to the multiple and crops back
    img, fov, _ = synthetic_vessel_batch(2, 30)
    assert unet_logits(t.eval(), img, fov).shape == (2, 30, 30)
    with pytest.raises(ValueError, match="unknown U-Net arch"):
        build_unet({"width": 3})
    with pytest.raises(ValueError, match="norm"):
        build_unet({"norm": "layer"})


def test_standardisation_matches_between_numpy_stream_and_torch():
    img, fov, _ = synthetic_vessel_batch(2, 32)
    u8 = (img * 255).round().to(torch.uint8)
    x = u8.float() / 255
    st = fov_stats(x, fov)
    for i in range(2):
        np.testing.assert_allclose(fov_stats_numpy(u8[i].permute(1, 2, 0).numpy(), fov[i].numpy()), st[i].numpy(), atol=1e-5)
    z = standardize(x, fov)
    assert (z[:, :, ~fov[0]] == 0).all()
    inside = z[0][:, fov[0]]
    assert torch.allclose(inside.mean(1), torch.zeros(3), atol=1e-5) and torch.allclose(inside.std(1, unbiased=False), torch.ones(3), atol=1e-3)
    # Global brightness/contrast per channel does not change the input the network sees.
    x2 = (x * 0.7 + 0.1) * fov[:, None]
    assert torch.allclose(standardize(x2, fov), z, atol=1e-4)
    found = fov_from_images(x)
    for i in range(2):
        assert torch.equal(found[i], x[i, 0] > max(8 / 255, 0.15 * float(torch.quantile(x[i, 0].flatten(), 0.99))))
    assert torch.equal(found, fov)  # the red disc on black


def test_loss_decreases_on_a_fixed_batch():
    img, fov, vessel = synthetic_vessel_batch(4, 32)
    m = tiny_unet()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss, logs = vessel_loss(unet_logits(m, img, fov), vessel.float(), fov)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert set(logs) == {"seg/loss", "seg/bce", "seg/soft_dice"}
    assert losses[-1] < 0.6 * losses[0]
    # Outside the FOV nothing counts.
    logits = unet_logits(m, img, fov).detach()
    flipped = vessel.float().clone()
    flipped[~fov] = 1 - flipped[~fov]
    assert torch.allclose(vessel_loss(logits, vessel.float(), fov)[0], vessel_loss(logits, flipped, fov)[0])
