"""SSIM against scikit-image on real DRIVE photographs, MS-SSIM's behaviour, and both loss terms."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import filters, transform
from skimage.metrics import structural_similarity

from ablate.losses import LOSSES
from ablate.losses.structural import MS_SSIM_MIN_SIDE, ms_ssim, ssim

STEMS = ("01_test", "21_training")
SIZE = (256, 248)  # DRIVE is 584 x 565; keep the aspect ratio; >= MS_SSIM_MIN_SIDE


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def drive_rgb(drive_dir) -> list[np.ndarray]:
    out = []
    for stem in STEMS:
        rgb = np.asarray(Image.open(drive_dir / "images" / f"{stem}.tif"), dtype=np.float64) / 255
        out.append(transform.resize(rgb, SIZE, anti_aliasing=True))
    return out


def _batch(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float().contiguous()


def _blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    return filters.gaussian(rgb, sigma=sigma, channel_axis=-1, mode="reflect")


def test_ssim_matches_skimage_gaussian_variant(drive_rgb):
    rng = np.random.default_rng(0)
    diffs = []
    for rgb in drive_rgb:
        degraded = np.clip(_blur(rgb, 1.0) + rng.normal(0, 0.03, rgb.shape), 0, 1)
        ref = structural_similarity(
            rgb, degraded, channel_axis=-1, data_range=1.0,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )
        ours = ssim(_batch(rgb), _batch(degraded)).item()
        diffs.append(abs(ours - ref))
        assert ref < 0.9  # the degradation is strong enough for the comparison to mean something
    print(f"ssim |ours - skimage| = {', '.join(f'{d:.2e}' for d in diffs)}")
    assert max(diffs) < 1e-3


def test_ssim_is_per_image(drive_rgb):
    a, b = (_batch(rgb) for rgb in drive_rgb)
    blurred = _batch(_blur(drive_rgb[1], 2.0))
    both = ssim(torch.cat([a, b]), torch.cat([a, blurred]))
    assert both.shape == (2,)
    assert both[0].item() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(both[1], ssim(b, blurred)[0])


def test_ms_ssim_is_one_for_identical_and_falls_with_blur(drive_rgb):
    x = _batch(drive_rgb[0])
    assert ms_ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    scores = [ms_ssim(x, _batch(_blur(drive_rgb[0], s))).item() for s in (0.5, 1.0, 2.0, 4.0)]
    assert all(a > b for a, b in itertools.pairwise(scores)), scores
    assert scores[-1] < 0.95


@pytest.mark.bad_input
def test_ms_ssim_rejects_images_too_small_for_five_scales():
    x = torch.rand(1, 3, MS_SSIM_MIN_SIDE - 1, MS_SSIM_MIN_SIDE)
    with pytest.raises(ValueError, match=f"at least {MS_SSIM_MIN_SIDE}x{MS_SSIM_MIN_SIDE}"):
        ms_ssim(x, x)
    square = torch.rand(1, 3, MS_SSIM_MIN_SIDE, MS_SSIM_MIN_SIDE)
    assert ms_ssim(square, square).item() == pytest.approx(1.0, abs=1e-6)  # the minimum itself works


def test_ms_ssim_relu_keeps_anticorrelated_images_defined():
    # An inverted image has negative contrast-structure: without relu the fractional powers give NaN.
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, MS_SSIM_MIN_SIDE, MS_SSIM_MIN_SIDE, generator=g)
    value = ms_ssim(x, 1 - x)
    assert torch.isfinite(value).all() and value.item() == 0


@pytest.mark.parametrize("name", ["ssim", "ms_ssim"])
def test_structural_term_contract(name, drive_rgb):
    term = LOSSES.build(name)
    x = _batch(drive_rgb[0])
    g = torch.Generator().manual_seed(1)
    x_hat = (x + 0.05 * torch.randn(x.shape, generator=g)).requires_grad_(True)
    value = term(x, x_hat)
    assert value.dim() == 0 and 0 < value.item() <= 1
    value.backward()
    assert torch.isfinite(x_hat.grad).all() and x_hat.grad.abs().sum() > 0
    assert term(x, x.clone()).item() <= 1e-6
    with pytest.raises(ValueError, match="differ in shape"):
        term(x, x_hat[..., :-1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        term(x * 2, x_hat)
