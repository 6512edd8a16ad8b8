"""vessel_width (ablate.evaluate.width): area per centre-line length resolves 1 px, on
axis-aligned bars and on oblique lines, where 2R - 1 cannot."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.evaluate.morphology import vessel_features
from tests.helpers.vessel_drawings import arc, bar, draw


@pytest.mark.parametrize("w", [1, 2, 3, 4, 5])
def test_vessel_width_of_bars_1_to_5_px(w):
    for vertical in (False, True):
        f = vessel_features(bar(w, vertical))
        assert f["vessel_width"] == pytest.approx(w, abs=0.25), (w, vertical, f["vessel_width"])


def test_average_width_cannot_tell_1_from_2_px_but_vessel_width_can():
    """The issue's case: the old 2R - 1 reads 1, 1, 3, 3, 5; the new width steps by 1."""
    old = [vessel_features(bar(w))["average_width"] for w in (1, 2, 3, 4, 5)]
    new = [vessel_features(bar(w))["vessel_width"] for w in (1, 2, 3, 4, 5)]
    assert old == pytest.approx([1, 1, 3, 3, 5])
    assert np.diff(new) == pytest.approx([1, 1, 1, 1], abs=0.1)


@pytest.mark.parametrize("angle", [15, 30, 60, 75])
@pytest.mark.parametrize("w", [2, 3, 4, 5])
def test_vessel_width_of_oblique_lines(angle, w):
    t = np.radians(angle)
    s = np.linspace(-90, 90, 5000)
    line = np.stack([100 + s * np.sin(t), 128 + s * np.cos(t)], 1)
    f = vessel_features(draw(line, w, (200, 256)))
    assert f["vessel_width"] == pytest.approx(w, abs=0.25), (angle, w, f["vessel_width"])


@pytest.mark.parametrize("w", [2, 3, 5])
def test_vessel_width_of_an_arc(w):
    f = vessel_features(draw(arc(80, 0.2, 2.2), w, (200, 256)))
    assert f["vessel_width"] == pytest.approx(w, abs=0.25)
