"""Vessel sharpness (ablate.evaluate.sharpness), read on the images themselves: it falls with blur and with vessel contrast."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from ablate.evaluate.sharpness import sharpness
from tests.helpers.vessel_drawings import halve_vessel_contrast, prepared_drive_photograph

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sharpness_falls_with_blur_and_with_vessel_contrast(drive_dir):
    p = prepared_drive_photograph(drive_dir, "01_test", 256)
    g = p.image[..., 1].astype(np.float64) / 255
    blur = [sharpness(g, ndi.gaussian_filter(g, s) if s else g, p.vessel, p.fov) for s in (0, 1, 2)]
    faint = [sharpness(g, halve_vessel_contrast(g, f), p.vessel, p.fov) for f in (1.0, 0.75, 0.5)]
    for key in ("vessel_sharpness", "vessel_contrast"):
        for series in (blur, faint):
            v = [s[key] for s in series]
            assert v[0] == pytest.approx(1.0) and v[0] > v[1] > v[2], (key, v)
    assert blur[2]["vessel_sharpness"] < 0.5 and faint[2]["vessel_sharpness"] < 0.7
    # noise is not sharpness: the signed slope across the borders barely moves
    noisy = g + np.random.default_rng(0).normal(0, 0.03, g.shape)
    assert sharpness(g, noisy, p.vessel, p.fov)["vessel_sharpness"] == pytest.approx(1.0, abs=0.05)
