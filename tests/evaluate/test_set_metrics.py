"""Set metrics (ablate.evaluate.set_metrics): below each metric's minimum number of images, NaN with a note."""

from __future__ import annotations

import pytest


@pytest.mark.usefixtures("no_ray_start")
def test_set_metrics_below_each_minimum_are_nan_with_a_note():
    """Finding F2 (issue 25): Set metrics below each minimum are nan with a note."""

    import numpy as np

    from ablate.evaluate.set_metrics import set_metrics

    rng = np.random.default_rng(0)
    one, notes = set_metrics(rng.normal(size=(1, 8)), rng.normal(size=(1, 8)), rng.normal(size=(1, 4)),
                             rng.normal(size=(1, 4)), "retfound")
    assert all(np.isnan(v) for v in one.values()) and set(one) == {"test/fid", "test/kid", "test/kid_std",
                                                                     "test/fd_retfound"}
    assert "FID not computable at n = 1 test image(s): it needs at least 2" in notes[0]
    assert any("fd_retfound" in n for n in notes)
    four, notes = set_metrics(rng.normal(size=(4, 8)), rng.normal(size=(4, 8)))
    assert not notes and all(np.isfinite(v) for v in four.values())
