"""Reference values for ablate.evaluate.morphology.

Synthetic vessels are drawn at known geometry (every pixel whose centre lies
within w/2 of an analytic centre line), so each feature has a number it must
reproduce; the DRIVE manual mask checks that a real tree gives plausible,
finite values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from ablate.evaluate.morphology import FEATURES, VesselMap, agreement, segment_tortuosity, tortuosities, vessel_features
from ablate.evaluate.reconstruct import reference_levels, vessel_maps
from ablate.segmenter.ridge import RidgeSegmenter, rim_px
from ablate.segmenter.unet import UNetSegmenter, build_unet
from tests.helpers.vessel_drawings import arc, bar, draw, halve_vessel_contrast, prepared_drive_photograph


def sinusoid(amplitude: float, period: float = 80.0, x0: float = 10, x1: float = 290, row: float = 80) -> np.ndarray:
    x = np.linspace(x0, x1, 20000)
    return np.stack([row + amplitude * np.sin(2 * np.pi * x / period), x], 1)


# -- fractal dimension ---------------------------------------------------------
def test_fractal_dimension_of_line_is_1():
    m = np.zeros((512, 512), bool)
    m[200, 37:470] = True
    assert vessel_features(m)["fractal_dimension"] == pytest.approx(1.0, abs=0.05)
    yy, xx = np.mgrid[:512, :512]
    diag = (yy - xx) == 3
    assert vessel_features(diag)["fractal_dimension"] == pytest.approx(1.0, abs=0.05)


def test_fractal_dimension_of_filled_square_is_2():
    m = np.zeros((512, 512), bool)
    m[37:470, 37:470] = True
    assert vessel_features(m)["fractal_dimension"] == pytest.approx(2.0, abs=0.05)


# -- width ---------------------------------------------------------------------
@pytest.mark.parametrize("w", [3, 5, 7, 9])
def test_width_of_straight_bars(w):
    for vertical in (False, True):
        f = vessel_features(bar(w, vertical))
        assert f["average_width"] == pytest.approx(w, rel=0.10)
        assert f["average_width_area"] == pytest.approx(w, rel=0.10)


@pytest.mark.parametrize("w", [3, 5, 7, 9])
def test_width_of_curved_arc(w):
    f = vessel_features(draw(arc(80, 0.2, 2.2), w, (200, 256)))
    assert f["average_width"] == pytest.approx(w, rel=0.10)


# -- tortuosity ----------------------------------------------------------------
def test_straight_segment_tortuosity():
    pts = np.stack([np.full(60, 5), np.arange(60)], 1)
    dt, sct, td = segment_tortuosity(pts)
    assert dt == pytest.approx(1.0, abs=1e-9)
    assert sct == pytest.approx(0.0, abs=1e-12)
    assert td == 0.0
    diag = np.stack([np.arange(60), np.arange(60)], 1)
    assert segment_tortuosity(diag)[0] == pytest.approx(1.0, abs=1e-9)
    f = vessel_features(bar(5))  # through skeleton + segment walk
    assert f["segments"] == 1
    assert f["distance_tortuosity"] == pytest.approx(1.0, abs=1e-6)
    assert f["squared_curvature_tortuosity"] == pytest.approx(0.0, abs=1e-8)
    assert f["tortuosity_density"] == pytest.approx(0.0, abs=1e-8)


def test_sinusoid_tortuosity_increases_with_amplitude():
    keys = ("distance_tortuosity", "squared_curvature_tortuosity", "tortuosity_density")
    straight = vessel_features(bar(3, shape=(160, 300)))
    prev = [straight[k] for k in keys]
    for amp in (3, 8, 16):
        f = vessel_features(draw(sinusoid(amp), 3, (160, 300)))
        assert f["segments"] == 1
        cur = [f[k] for k in keys]
        assert all(c > p for c, p in zip(cur, prev)), (amp, cur, prev)
        prev = cur


@pytest.mark.parametrize("w", [3, 7])
def test_circle_arc_matches_analytic(w):
    radius, span = 80.0, 2.0
    f = vessel_features(draw(arc(radius, 0.2, 0.2 + span), w, (200, 256)))
    assert f["segments"] == 1
    assert f["distance_tortuosity"] == pytest.approx(span / (2 * math.sin(span / 2)), rel=0.02)
    assert f["squared_curvature_tortuosity"] == pytest.approx(1 / radius**2, rel=0.10)
    assert f["tortuosity_density"] == 0.0  # a single bend has no inflection


def test_segments_are_walked_in_order():
    """Guard against AutoMorph #18: consecutive segment pixels must be neighbours."""
    vm = VesselMap(draw(sinusoid(16), 5, (160, 300)) | bar(5, shape=(160, 300)))
    segs = vm.segments
    assert len(segs) >= 3
    for s in segs:
        step = np.abs(np.diff(s, axis=0)).max(axis=1)
        assert (step == 1).all()
        assert len({tuple(p) for p in s}) == len(s)
        assert vm.degree[tuple(s[0])] in (1, 2) and vm.degree[tuple(s[-1])] in (1, 2)
    # every non-junction skeleton pixel is on exactly one segment (no loops here)
    covered = np.zeros_like(vm.skeleton)
    for s in segs:
        covered[s[:, 0], s[:, 1]] = True
    assert sum(len(s) for s in segs) == covered.sum()
    assert np.array_equal(covered, vm.skeleton & ~vm.junctions)


def test_batched_equals_single():
    vm = VesselMap(draw(sinusoid(8), 3, (160, 300)) | bar(3, shape=(160, 300)))
    segs = [s for s in vm.segments if len(s) >= 11]
    dt, sct, td = tortuosities(np.concatenate(segs), np.array([len(s) for s in segs]))
    for i, s in enumerate(segs):
        assert np.allclose((dt[i], sct[i], td[i]), segment_tortuosity(s), equal_nan=True)


# -- skeleton graph ------------------------------------------------------------
def thick_lines(shape, lines, w):
    m = np.zeros(shape, bool)
    for (r0, c0), (r1, c1) in lines:
        t = np.linspace(0, 1, 2000)[:, None]
        m |= draw(np.array([r0, c0]) * (1 - t) + np.array([r1, c1]) * t, w, shape)
    return m


def test_branch_and_end_points_of_y_and_plus():
    y = thick_lines((128, 128), [((64, 64), (10, 64)), ((64, 64), (110, 20)), ((64, 64), (110, 108))], 5)
    f = vessel_features(y)
    assert (f["branch_points"], f["end_points"], f["segments"]) == (1, 3, 3)
    plus = thick_lines((128, 128), [((10, 64), (118, 64)), ((64, 10), (64, 118))], 5)
    f = vessel_features(plus)
    assert (f["branch_points"], f["end_points"], f["segments"]) == (1, 4, 4)
    assert (f["components"], f["holes"]) == (1, 0)


def test_skeleton_length_counts_diagonals_as_sqrt2():
    m = np.zeros((64, 64), bool)
    m[10, 5:55] = True
    assert vessel_features(m)["skeleton_length"] == pytest.approx(49.0)
    d = np.eye(64, dtype=bool)[5:55, 5:55]
    assert vessel_features(d)["skeleton_length"] == pytest.approx(49 * math.sqrt(2))


# -- density / FOV -------------------------------------------------------------
def test_density_inside_fov():
    m = np.zeros((40, 40), bool)
    fov = np.zeros((40, 40), bool)
    fov[10:20, 10:20] = True  # 100 px
    m[12, 10:20] = True  # 10 px inside
    m[14:16, 10:15] = True  # 10 px inside
    m[30:, :] = True  # outside: ignored
    assert vessel_features(m, fov)["density"] == pytest.approx(0.20)
    assert vessel_features(m)["density"] == pytest.approx((20 + 400) / 1600)


# -- agreement -----------------------------------------------------------------
def test_cldice_self_and_cut_vessel():
    ref = bar(7, shape=(64, 256))
    a = agreement(ref, ref)
    assert a["dice"] == 1.0 and a["cldice"] == 1.0
    assert a["betti0_error"] == 0 and a["betti1_error"] == 0
    assert all(a[f"delta_{k}"] == 0 or math.isnan(a[f"delta_{k}"]) for k in FEATURES)
    cut = ref.copy()
    cut[:, 127:129] = False  # a 2-px gap across the vessel
    a = agreement(ref, cut)
    assert a["dice"] > 0.99  # overlap hardly notices ...
    assert a["cldice"] < 1.0
    assert a["betti0_error"] == 1  # ... topology does
    assert a["delta_components"] == 1 and a["delta_end_points"] == 2


def test_cldice_punishes_lost_thin_vessels_more_than_dice():
    shape = (128, 256)
    trunk = thick_lines(shape, [((64, 20), (64, 236))], 9)
    twig = thick_lines(shape, [((60, 128), (5, 128))], 2) & ~trunk
    a = agreement(trunk | twig, trunk)
    assert a["dice"] > 0.95
    assert 1 - a["cldice"] > 5 * (1 - a["dice"])  # thin vessel: little area, much centre line


def test_betti1_ring():
    yy, xx = np.mgrid[:128, :128]
    r = np.hypot(yy - 64, xx - 64)
    ring = (r > 30) & (r < 36)
    assert vessel_features(ring)["holes"] == 1
    cut = ring.copy()
    cut[60:68, 90:] = False
    assert vessel_features(cut)["holes"] == 0
    a = agreement(ring, cut)
    assert a["betti1_error"] == 1 and a["betti0_error"] == 0
    # 4-connected background: a diagonal gap in the vessel does not open the hole
    diamond = np.zeros((32, 32), bool)
    for i in range(8):
        diamond[8 + i, 16 + i] = diamond[16 + i, 24 - i] = diamond[24 - i, 16 - i] = diamond[16 - i, 8 + i] = True
    assert vessel_features(diamond)["holes"] == 1
    assert vessel_features(diamond)["components"] == 1


def test_fov_restricts_agreement():
    ref = bar(5)
    test = ref.copy()
    test[:, :60] = False
    fov = np.zeros_like(ref)
    fov[:, 80:] = True
    assert agreement(ref, test)["dice"] < 0.9
    assert agreement(ref, test, fov)["dice"] == 1.0


# -- degenerate and real maps --------------------------------------------------
@pytest.mark.bad_input
def test_empty_map():
    e = np.zeros((64, 64), bool)
    f = vessel_features(e)
    assert set(f) == set(FEATURES)
    for k in ("density", "skeleton_length", "branch_points", "end_points", "components", "holes", "segments"):
        assert f[k] == 0
    for k in ("fractal_dimension", "average_width", "vessel_width", "average_width_area", "distance_tortuosity",
              "squared_curvature_tortuosity", "tortuosity_density"):
        assert math.isnan(f[k])
    a = agreement(e, e)
    assert a["dice"] == 1.0 and a["cldice"] == 1.0
    a = agreement(bar(5, shape=(64, 128)), np.zeros((64, 128), bool))
    assert a["dice"] == 0.0 and a["cldice"] == 0.0 and a["betti0_error"] == 1


@pytest.mark.bad_input
def test_a_feature_only_one_map_lacks_reads_its_floor_in_the_delta():
    """A map without vessels has no width, fractal dimension or tortuosity (NaN); its delta against
    a map with them is taken from the feature's least value, so losing (or inventing) the vessels
    scores the whole feature, not a NaN the report's mean would skip (issue 27)."""
    vessels, empty = arc(60, 0.3, 2.8, centre=(20.0, 64.0)), np.zeros((96, 128), bool)
    ref = draw(vessels, 5, empty.shape)
    f = vessel_features(ref)
    lost, invented = agreement(ref, empty), agreement(empty, ref)
    for k, floor in (("fractal_dimension", 0), ("vessel_width", 0), ("average_width", 0), ("average_width_area", 0),
                     ("distance_tortuosity", 1), ("squared_curvature_tortuosity", 0), ("tortuosity_density", 0)):
        assert math.isfinite(f[k]) and lost[f"delta_{k}"] == pytest.approx(floor - f[k]), k
        assert invented[f"delta_{k}"] == pytest.approx(f[k] - floor), k
    assert lost["delta_vessel_width"] < -4 and lost["delta_distance_tortuosity"] < 0
    assert math.isnan(agreement(empty, empty)["delta_vessel_width"])  # neither map has one: nothing to compare


def test_drive_manual_mask(drive_dir):
    from PIL import Image

    vessels = np.array(Image.open(drive_dir / "vessels" / "01_test.gif")) > 0
    fov = np.array(Image.open(drive_dir / "fov" / "01_test.gif")) > 0
    vm = VesselMap(vessels, fov)
    f = vm.features()
    assert all(math.isfinite(v) for v in f.values()), f
    assert 0.08 <= f["density"] <= 0.17
    assert 1.3 <= f["fractal_dimension"] <= 1.8
    assert 1.5 <= f["average_width"] <= 6.0
    assert 1.5 <= f["average_width_area"] <= 6.0
    assert 1.0 <= f["distance_tortuosity"] <= 1.3
    assert f["branch_points"] > 50 and f["end_points"] > 50 and f["segments"] > 100
    a = agreement(vm, vm)
    assert a["dice"] == 1.0 and a["cldice"] == 1.0
    assert a["betti0_error"] == 0 and a["betti1_error"] == 0
    assert all(a[f"delta_{k}"] == 0 for k in FEATURES)


pytestmark = pytest.mark.usefixtures("one_thread")


def _all_vessel_unet() -> UNetSegmenter:
    """A U-Net that calls every pixel vessel (head bias +10): the worst case for the rim."""
    net = build_unet({"base": 4, "levels": 2})
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(10.0)
    return UNetSegmenter(net, "unet:all-vessel")


@pytest.mark.parametrize("stem", ["01_test", "05_test", "25_training"])
def test_no_vessel_on_the_fov_rim_with_either_segmenter(drive_dir, stem):
    p = prepared_drive_photograph(drive_dir, stem, 256)
    dist = ndi.distance_transform_edt(p.fov)  # px from the nearest non-FOV pixel
    rim = p.fov & (dist <= rim_px(256))
    assert rim_px(256) == 8  # issue 27: 16 px at 512 (was 8), so no ring on blurred reconstructions
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


@pytest.mark.parametrize("size, stem", [(128, "01_test"), (128, "05_test"), (256, "12_test")])
def test_no_ring_just_inside_the_rim_band_on_a_blurred_photograph(drive_dir, size, stem, monkeypatch):
    """Issue 27: a blurred reconstruction smears the dark FOV edge inward; the ridge filter (the
    segmenter that rings) finds no more vessel in the band just inside the excluded rim than the
    manual mask has there. With a 1 px rim the ring is there (the measure sees one), and at
    128 px half the band already lets it in. The trained U-Nets' band densities: benchmarks/rim_band.py (BENCHMARKS.md)."""
    from ablate.segmenter import ridge
    from benchmarks.rim_band import band_densities

    p = prepared_drive_photograph(drive_dir, stem, size)
    sigma = 2.5 * size / 128  # the q2-drive arms equal a Gaussian blur of 2.2-2.7 px at 128 px
    blurred = (ndi.gaussian_filter(p.image.astype(np.float32), (sigma, sigma, 0)) + 0.5).clip(0, 255)
    blurred = blurred.astype(np.uint8) * p.fov[..., None]  # the black surround blurred in, as a decoder does

    def inner_band(rim: int) -> tuple[float, float]:
        found = vessel_maps(RidgeSegmenter(), blurred[None], p.fov[None])[0]
        return band_densities(found, p.fov, rim)[0], band_densities(p.vessel.astype(bool), p.fov, rim)[0]

    found, manual = inner_band(rim_px(size))
    assert found <= 1.5 * manual + 0.02, (found, manual)
    for narrow in (1, rim_px(size) // 2) if size == 128 else (1,):
        monkeypatch.setattr(ridge, "rim_px", lambda side, narrow=narrow: narrow)
        found, manual = inner_band(narrow)
        assert found > 2 * manual, (narrow, found, manual)  # the ring the full band keeps out


def test_ridge_cuts_a_reconstruction_at_its_originals_level(drive_dir):
    """With its own CLAHE + Otsu, the ridge fallback finds nearly the same vessels at half the
    vessel contrast; cut at the original's level it finds fewer. (Only somewhat fewer: CLAHE
    and Meijering's own normalisation still absorb most of the contrast, which is why Q2 is
    not judged with this segmenter.)"""
    p = prepared_drive_photograph(drive_dir, "02_test", 256)
    seg = RidgeSegmenter()
    img = p.image.astype(np.float64) / 255
    faint = img.copy()
    faint[..., 1] = halve_vessel_contrast(img[..., 1], 0.5)
    faint = (np.clip(faint, 0, 1) * 255).round().astype(np.uint8) * p.fov[..., None]
    levels = reference_levels(seg, p.image[None], p.fov[None])
    assert levels is not None and np.isfinite(levels).all()
    ref = vessel_maps(seg, p.image[None], p.fov[None], levels)[0]
    own = vessel_maps(seg, faint[None], p.fov[None])[0]
    same = vessel_maps(seg, faint[None], p.fov[None], levels)[0]
    d_own, d_same = agreement(ref, own, p.fov)["dice"], agreement(ref, same, p.fov)["dice"]
    assert d_same < d_own - 0.02 and same.sum() < own.sum(), (d_own, d_same, same.sum(), own.sum())
    assert _all_vessel_unet().levels(torch.zeros(1, 3, 32, 32)) is None  # U-Net: one threshold for all
