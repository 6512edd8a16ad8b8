"""What Q2 measures on vessels: no vessel on the FOV rim (either segmenter), an original and
its reconstruction cut at the same level, and sharpness read on the images themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from ablate.data.preprocess import preprocess
from ablate.evaluate.morphology import agreement
from ablate.evaluate.reconstruct import reference_levels, vessel_maps
from ablate.evaluate.sharpness import sharpness
from ablate.segmenter.ridge import RidgeSegmenter, rim_px
from ablate.segmenter.unet import UNetSegmenter, build_unet

pytestmark = pytest.mark.usefixtures("one_thread")


def _drive(drive_dir: Path, stem: str, size: int):
    """A prepared DRIVE photograph: cropped to its FOV, black (plain) outside it."""
    d = drive_dir
    return preprocess(d / "images" / f"{stem}.tif", size, fov=d / "fov" / f"{stem}.gif",
                      vessel=d / "vessels" / f"{stem}.gif")


def _all_vessel_unet() -> UNetSegmenter:
    """A U-Net that calls every pixel vessel (head bias +10): the worst case for the rim."""
    net = build_unet({"base": 4, "levels": 2})
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(10.0)
    return UNetSegmenter(net, "unet:all-vessel")


@pytest.mark.parametrize("stem", ["01_test", "05_test", "25_training"])
def test_no_vessel_on_the_fov_rim_with_either_segmenter(drive_dir, stem):
    p = _drive(drive_dir, stem, 256)
    dist = ndi.distance_transform_edt(p.fov)  # px from the nearest non-FOV pixel
    rim = p.fov & (dist <= rim_px(256))
    assert rim_px(256) == 4
    for seg in (RidgeSegmenter(), _all_vessel_unet()):
        m = vessel_maps(seg, p.image[None], p.fov[None])[0]
        assert not (m & rim).any(), (seg.name, int((m & rim).sum()))
        assert m.sum() > 0.05 * p.fov.sum() * (seg.name.startswith("ridge") and 1 or 10)
    # The ridge filter itself no longer rings the FOV: just inside the excluded band it finds
    # no more vessel than the manual mask has there (the old mean-filled surround gave a ring
    # of 2-20x the manual count).
    band = p.fov & (dist > rim_px(256)) & (dist <= 2 * rim_px(256))
    ridge = vessel_maps(RidgeSegmenter(), p.image[None], p.fov[None])[0]
    assert (ridge & band).sum() <= 2.0 * max((p.vessel & band).sum(), 20), ((ridge & band).sum(), (p.vessel & band).sum())


def _halve_vessel_contrast(g: np.ndarray, factor: float) -> np.ndarray:
    bg = ndi.grey_closing(g, size=(9, 9))  # the background with the dark vessels closed over
    return bg - factor * (bg - g)


def test_ridge_cuts_a_reconstruction_at_its_originals_level(drive_dir):
    """With its own CLAHE + Otsu, the ridge fallback finds nearly the same vessels at half the
    vessel contrast; cut at the original's level it finds fewer. (Only somewhat fewer: CLAHE
    and Meijering's own normalisation still absorb most of the contrast, which is why Q2 is
    not judged with this segmenter.)"""
    p = _drive(drive_dir, "02_test", 256)
    seg = RidgeSegmenter()
    img = p.image.astype(np.float64) / 255
    faint = img.copy()
    faint[..., 1] = _halve_vessel_contrast(img[..., 1], 0.5)
    faint = (np.clip(faint, 0, 1) * 255).round().astype(np.uint8) * p.fov[..., None]
    levels = reference_levels(seg, p.image[None], p.fov[None])
    assert levels is not None and np.isfinite(levels).all()
    ref = vessel_maps(seg, p.image[None], p.fov[None], levels)[0]
    own = vessel_maps(seg, faint[None], p.fov[None])[0]
    same = vessel_maps(seg, faint[None], p.fov[None], levels)[0]
    d_own, d_same = agreement(ref, own, p.fov)["dice"], agreement(ref, same, p.fov)["dice"]
    assert d_same < d_own - 0.02 and same.sum() < own.sum(), (d_own, d_same, same.sum(), own.sum())
    assert _all_vessel_unet().levels(torch.zeros(1, 3, 32, 32)) is None  # U-Net: one threshold for all


def test_sharpness_falls_with_blur_and_with_vessel_contrast(drive_dir):
    p = _drive(drive_dir, "01_test", 256)
    g = p.image[..., 1].astype(np.float64) / 255
    blur = [sharpness(g, ndi.gaussian_filter(g, s) if s else g, p.vessel, p.fov) for s in (0, 1, 2)]
    faint = [sharpness(g, _halve_vessel_contrast(g, f), p.vessel, p.fov) for f in (1.0, 0.75, 0.5)]
    for key in ("vessel_sharpness", "vessel_contrast"):
        for series in (blur, faint):
            v = [s[key] for s in series]
            assert v[0] == pytest.approx(1.0) and v[0] > v[1] > v[2], (key, v)
    assert blur[2]["vessel_sharpness"] < 0.5 and faint[2]["vessel_sharpness"] < 0.7
    # noise is not sharpness: the signed slope across the borders barely moves
    noisy = g + np.random.default_rng(0).normal(0, 0.03, g.shape)
    assert sharpness(g, noisy, p.vessel, p.fov)["vessel_sharpness"] == pytest.approx(1.0, abs=0.05)
