"""The `automorph` morphology definitions reproduce AutoMorph's numbers on hand-made maps
(values worked out by hand from rmaphoh/AutoMorph's tortuosity_measures.py formulas)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ablate.evaluate.automorph import automorph_features, features_for
from ablate.evaluate.morphology import vessel_features


def _path_map():
    """One 1-px path: 8 px right, a diagonal step, 2 px down, then 4 px down-left. 15 pixels."""
    pts = [(5, c) for c in range(8)] + [(6, 8), (7, 8), (8, 8), (9, 7), (10, 6), (11, 5), (12, 4)]
    m = np.zeros((32, 32), bool)
    for r, c in pts:
        m[r, c] = True
    return m, pts


def test_automorph_tortuosities_of_a_hand_made_path():
    m, _pts = _path_map()
    f = automorph_features(m)
    assert f["segments"] == 1  # 15 pixels > 10
    # distance: (7 + sqrt2 + 1 + 1 + 4 sqrt2) / |(5,0)-(12,4)| = (9 + 5 sqrt2) / sqrt(65)
    assert f["distance_tortuosity"] == pytest.approx((9 + 5 * math.sqrt(2)) / math.sqrt(65), abs=1e-9)
    # curvature: three corners, each (x'y'' - x''y') / (x'^2 + y'^2)^1.5 = -0.25 / 1.25**1.5
    assert f["squared_curvature_tortuosity"] == pytest.approx(3 * 0.25 / 1.25**1.5, abs=1e-9)
    # density: column steps +1 .. +1, 0, 0, -1 ..: sign changes at 8 and 10 -> n = 2;
    # pieces [0:8] (straight) and [8:10] (straight) add 0, so (n - 1) / n = 0.5
    assert f["tortuosity_density"] == pytest.approx(0.5, abs=1e-12)
    # ours differ on the same path (smoothed, truly squared curvature, Grisan's formula)
    ours = vessel_features(m)
    assert ours["tortuosity_density"] != pytest.approx(0.5, abs=0.05)


def test_automorph_fractal_dimension_and_density_of_hand_made_maps():
    line = np.zeros((64, 64), bool)
    line[10, :] = True  # N(k) = 64 / k partly filled boxes -> FD = 1
    f = automorph_features(line)
    assert f["fractal_dimension"] == pytest.approx(1.0, abs=1e-12)
    assert f["density"] == pytest.approx(64 / 64**2)
    sq = np.zeros((64, 64), bool)
    sq[1:33, 1:33] = True  # full boxes are not counted: N(64..4) = 1, 4, 8, 16, 32 by hand
    expect = -np.polyfit(np.log([64, 32, 16, 8, 4]), np.log([1, 4, 8, 16, 32]), 1)[0]
    assert automorph_features(sq)["fractal_dimension"] == pytest.approx(expect, abs=1e-12)
    assert vessel_features(sq)["fractal_dimension"] == pytest.approx(2.0, abs=0.1)  # ours: occupied boxes
    # density over the whole image, not the FOV
    fov = np.zeros((64, 64), bool)
    fov[:, :32] = True
    assert automorph_features(sq, fov)["density"] == pytest.approx((32 * 31) / 64**2)
    assert vessel_features(sq, fov)["density"] == pytest.approx((32 * 31) / (64 * 32))


def test_definitions_are_named():
    assert features_for("automorph")[0] is automorph_features
    with pytest.raises(ValueError, match="automorph"):
        features_for("retipy")


def test_automorph_fractal_dimension_on_drive(drive_dir):
    """The issue's figures on DRIVE 01_test's manual map prepared at 256 px: 1.774 with
    AutoMorph's box counting, 1.450 with ours."""
    from ablate.data.preprocess import preprocess

    d = drive_dir
    p = preprocess(d / "images" / "01_test.tif", 256, fov=d / "fov" / "01_test.gif", vessel=d / "vessels" / "01_test.gif")
    assert automorph_features(p.vessel, p.fov)["fractal_dimension"] == pytest.approx(1.774, abs=5e-4)
    assert vessel_features(p.vessel, p.fov)["fractal_dimension"] == pytest.approx(1.450, abs=5e-4)
