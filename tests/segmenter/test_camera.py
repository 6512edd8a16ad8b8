"""A judge that travels: the camera shifts (segmenter/camera.py) do what their names say on a
real DRIVE photograph, the training augmentation covers the benchmark's shifts, the U-Net's
threshold is set on val labels only (segmenter/threshold.py), and `ablate segmenter evaluate`
scores the images that have masks and names the ones it skipped."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from ablate.segmenter.camera import SHIFTS, CameraJitter, blur, contrast, gamma, hue_shift, low_resolution
from ablate.segmenter.patches import _affine, augment_image
from ablate.segmenter.threshold import best_threshold


@pytest.fixture(scope="module")
def eye(drive_dir):
    """DRIVE 01_test at 256 px: float image, FOV, vessel mask."""
    from ablate.data.preprocess import preprocess

    stem = "01_test"
    p = preprocess(drive_dir / "images" / f"{stem}.tif", 256, fov=drive_dir / "fov" / f"{stem}.gif",
                   vessel=drive_dir / "vessels" / f"{stem}.gif")
    return p.image.astype(np.float32) / 255, p.fov, p.vessel


def _grad_energy(x, fov):
    g = x[..., 1]
    gy, gx = np.gradient(g)
    inner = fov.copy()
    inner[:4] = inner[-4:] = False
    inner[:, :4] = inner[:, -4:] = False
    return float((gx ** 2 + gy ** 2)[inner].mean())


def test_every_shift_of_the_issue_is_there_and_keeps_the_outside_black(eye):
    x, fov, _ = eye
    assert {"none", "gamma 0.6", "gamma 1.6", "contrast x0.6", "blur sigma 1.5", "downscale x0.5"} <= set(SHIFTS)
    assert any(k.startswith("hue") for k in SHIFTS)
    for name, shift in SHIFTS.items():
        y = shift(x, fov)
        assert y.shape == x.shape and y.dtype == np.float32, name
        assert (y[~fov] == 0).all() and y.min() >= 0 and y.max() <= 1, name
    np.testing.assert_array_equal(SHIFTS["none"](x, fov), x * fov[..., None])


def test_gamma_contrast_and_hue_change_what_they_name(eye):
    x, fov, _ = eye
    m = x[fov].mean()
    assert gamma(x, fov, 0.6)[fov].mean() > m + 0.05 and gamma(x, fov, 1.6)[fov].mean() < m - 0.05
    c = contrast(x, fov, 0.6)
    assert c[fov].mean() == pytest.approx(m, abs=2e-3)  # about the FOV mean: brightness kept
    assert c[fov].std() / x[fov].std() == pytest.approx(0.6, abs=0.02)
    from skimage.color import rgb2hsv

    h0, h1 = rgb2hsv(x)[..., 0][fov], rgb2hsv(hue_shift(x, fov, 0.05))[..., 0][fov]
    turned = ((h1 - h0 + 0.5) % 1.0) - 0.5  # signed hue difference on the circle
    sat = rgb2hsv(x)[..., 1][fov] > 0.2  # hue is undefined for grey pixels
    assert np.median(turned[sat]) == pytest.approx(0.05, abs=0.005)
    back = hue_shift(hue_shift(x, fov, 0.05), fov, -0.05)
    assert np.abs(back - x * fov[..., None]).max() < 1e-4


def test_blur_and_resolution_loss_soften_without_darkening_the_rim(eye):
    x, fov, _ = eye
    e0 = _grad_energy(x, fov)
    e1, e2 = _grad_energy(blur(x, fov, 1.0), fov), _grad_energy(blur(x, fov, 2.0), fov)
    assert e0 > e1 > e2
    assert _grad_energy(low_resolution(x, fov, 0.5), fov) < 0.7 * e0
    np.testing.assert_allclose(low_resolution(x, fov, 1.0), x * fov[..., None])
    # Pixels just inside the FOV edge keep their level: the black surround is not blurred in.
    from scipy.ndimage import binary_erosion, gaussian_filter

    rim = fov & ~binary_erosion(fov, iterations=3)
    naive = gaussian_filter(x * fov[..., None], sigma=(2, 2, 0))
    assert abs(blur(x, fov, 2.0)[rim].mean() - x[rim].mean()) < 0.02
    assert x[rim].mean() - naive[rim].mean() > 0.05  # what a plain blur would have done
    low = low_resolution(x, fov, 0.5)
    assert abs(low[rim].mean() - x[rim].mean()) < 0.03


def test_training_draws_cover_the_benchmark_shifts():
    j = CameraJitter()
    assert 1 / j.gamma <= 0.6 and j.gamma >= 1.6
    assert 1 - j.contrast <= 0.6 and j.blur_sigma >= 1.5 and j.lowres <= 0.5 and j.hue >= 0.05
    rng = np.random.default_rng(0)
    draws = np.array([j.geometry(rng) for _ in range(2000)])
    assert np.abs(draws[:, 0]).max() <= j.rotate_deg and draws[:, 1].min() >= 1 / j.zoom - 1e-9
    assert draws[:, 1].max() <= j.zoom + 1e-9 and draws[:, 1].min() < 0.9 and draws[:, 1].max() > 1.1


def test_zoom_scales_image_and_masks_alike(eye):
    x, fov, vessel = eye
    z = _affine(fov, 0.0, 0.8, True)  # shrink: the FOV fills the square, so growing it would clip
    assert z.sum() / fov.sum() == pytest.approx(0.8 ** 2, rel=0.03)  # a disc's area scales by zoom^2
    assert np.array_equal(_affine(fov, 0.0, 1.0, True), fov)
    img = (x * 255).astype(np.uint8)
    rng = np.random.default_rng(3)
    for _ in range(5):
        a_img, a_fov, a_ves = augment_image(img, fov, vessel, rng, CameraJitter())
        assert not (a_ves & ~a_fov).any() and (a_img[~a_fov] == 0).all()
        assert 0.5 < a_ves.sum() / vessel.sum() < 1.6  # vessels moved with the image, not lost


def test_best_threshold_matches_brute_force_and_prefers_half_on_ties():
    rng = np.random.default_rng(0)
    vessel = rng.random((2, 40, 40)) < 0.15
    prob = np.clip(0.3 * vessel + rng.normal(0.1, 0.07, vessel.shape), 0, 1)  # under-confident: best cut well below 0.5
    fov = np.ones_like(vessel)
    fov[:, :3] = False
    t, d = best_threshold(prob, vessel, fov)
    from ablate.segmenter.scores import dice

    brute = {round(float(c), 2): dice(prob[fov] > c, vessel[fov]) for c in np.arange(0.05, 0.951, 0.01)}
    assert d == pytest.approx(max(brute.values()), abs=1e-9) and brute[t] == pytest.approx(d, abs=1e-9)
    assert 0.15 < t < 0.35 and d > brute[0.5] + 0.2  # 0.5 would have lost most vessels
    # Perfectly separated scores: every cut between the groups ties; the one nearest 0.5 wins.
    sep = np.where(vessel, 0.9, 0.1)
    assert best_threshold(sep, vessel, fov) == (0.5, 1.0)
    with pytest.raises(ValueError, match="no"):
        best_threshold(prob, np.zeros_like(vessel), fov)


@pytest.mark.bad_input
def test_segmenter_evaluate_scores_masked_images_and_names_the_skipped(drive_dir, tmp_path):
    """Three DRIVE test photographs, one without its manual mask: two are scored, one named."""
    from ablate.data.shards import prepare
    from ablate.segmenter.cli import app as seg_app

    src = tmp_path / "src"
    for sub in ("images", "vessels", "fov"):
        (src / sub).mkdir(parents=True)
    stems = ["01_test", "02_test", "03_test"]
    for s in stems:
        shutil.copy(drive_dir / "images" / f"{s}.tif", src / "images")
        shutil.copy(drive_dir / "fov" / f"{s}.gif", src / "fov")
    for s in stems[:2]:
        shutil.copy(drive_dir / "vessels" / f"{s}.gif", src / "vessels")
    (src / "split.csv").write_text("stem,split\n" + "".join(f"{s},test\n" for s in stems))
    data = tmp_path / "data"
    prepare(src, data, size=64)
    r = CliRunner().invoke(seg_app, ["evaluate", "--data", str(data), "--segmenter", "ridge"])
    assert r.exit_code == 0, r.output
    assert "on 2 test images" in r.output
    assert "skipped 1 image(s) of the test split without a vessel mask: images/03_test.tif" in r.output
