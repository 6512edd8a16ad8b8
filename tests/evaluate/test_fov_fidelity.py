"""Fidelity inside the field of view (ablate.evaluate.fov_fidelity) against scikit-image
on the FOV pixels of prepared DRIVE photographs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import filters
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ablate.data.preprocess import preprocess
from ablate.evaluate.fov_fidelity import pair_metrics_fov, window_interior
from ablate.losses.structural import WINDOW_RADIUS

pytestmark = pytest.mark.usefixtures("one_thread")


def _prepared(drive_dir, stem: str, size: int):
    p = preprocess(drive_dir / "images" / f"{stem}.tif", size, fov=drive_dir / "fov" / f"{stem}.gif")
    return p.image.astype(np.float64) / 255, p.fov


def _t(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float().contiguous()


@pytest.mark.parametrize("stem", ["01_test", "22_training"])
def test_fov_psnr_ssim_match_skimage_on_fov_pixels(drive_dir, stem):
    rgb, fov = _prepared(drive_dir, stem, 256)
    rng = np.random.default_rng(0)
    degraded = np.clip(filters.gaussian(rgb, sigma=1.0, channel_axis=-1) + rng.normal(0, 0.02, rgb.shape), 0, 1)
    degraded[~fov] = 0  # a decoder's surround is black too
    out = pair_metrics_fov(_t(rgb), _t(degraded), torch.from_numpy(fov)[None])
    ref_psnr = peak_signal_noise_ratio(rgb[fov], degraded[fov], data_range=1.0)
    _, smap = structural_similarity(rgb, degraded, channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False, full=True)
    inner = window_interior(torch.from_numpy(fov)[None])[0].numpy()
    # the FOV pixels skimage's own 5 px crop keeps
    crop = np.zeros_like(fov)
    crop[WINDOW_RADIUS:-WINDOW_RADIUS, WINDOW_RADIUS:-WINDOW_RADIUS] = True
    assert np.array_equal(inner, fov & crop) and inner.sum() > 0.7 * fov.sum()
    ref_ssim = smap[inner].mean()
    assert out["psnr"].item() == pytest.approx(ref_psnr, abs=1e-3)
    assert out["ssim"].item() == pytest.approx(ref_ssim, abs=1e-3)
    # the whole-image figures stay as secondary columns and differ: the black surround is free
    whole_psnr = peak_signal_noise_ratio(rgb, degraded, data_range=1.0)
    assert out["psnr_whole"].item() == pytest.approx(whole_psnr, abs=1e-3)
    assert out["psnr_whole"].item() > out["psnr"].item() + 0.5
    assert out["ssim_whole"].item() > out["ssim"].item()
    assert "ms_ssim" in out and "ms_ssim_whole" in out and 0 < out["ms_ssim"].item() < out["ms_ssim_whole"].item()


def test_fov_ms_ssim_is_one_for_identity_and_falls_with_blur(drive_dir):
    rgb, fov = _prepared(drive_dir, "03_test", 256)
    x, f = _t(rgb), torch.from_numpy(fov)[None]
    same = pair_metrics_fov(x, x.clone(), f)
    assert torch.isinf(same["psnr"]).all() and same["ms_ssim"].item() == pytest.approx(1.0, abs=1e-6)
    vals = []
    for s in (0.5, 1.0, 2.0):
        b = np.clip(filters.gaussian(rgb, sigma=s, channel_axis=-1), 0, 1) * fov[..., None]
        vals.append(pair_metrics_fov(x, _t(b), f)["ms_ssim"].item())
    assert vals[0] > vals[1] > vals[2]


def test_what_a_reconstruction_draws_outside_the_fov_never_moves_the_fov_figures(drive_dir):
    """Issue 27: SSIM windows near the rim read the surround; before, a grey surround (every FOV
    pixel the same) moved FOV SSIM from 0.714 to 0.668. Now both images share the original's."""
    rgb, fov = _prepared(drive_dir, "01_test", 256)
    f = torch.from_numpy(fov)[None]
    blurred = np.clip(filters.gaussian(rgb, sigma=1.0, channel_axis=-1), 0, 1)
    black, grey = blurred * fov[..., None], blurred.copy()
    grey[~fov] = 0.5
    a, b = pair_metrics_fov(_t(rgb), _t(black), f), pair_metrics_fov(_t(rgb), _t(grey), f)
    for name in ("psnr", "ssim", "ms_ssim"):
        assert b[name].item() == pytest.approx(a[name].item(), abs=1e-6), name
    assert b["ssim_whole"].item() < a["ssim_whole"].item()  # the whole-image figure still sees it


@pytest.mark.bad_input
def test_fov_metrics_refuse_an_empty_fov(drive_dir):
    rgb, _ = _prepared(drive_dir, "01_test", 64)
    with pytest.raises(ValueError, match="field of view"):
        pair_metrics_fov(_t(rgb), _t(rgb), torch.zeros(1, 64, 64, dtype=torch.bool))
