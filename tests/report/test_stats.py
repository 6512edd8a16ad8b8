"""The report's statistics (ablate.report.stats) against hand computations and scipy: Holm, the t interval, directions."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from ablate.report import stats

# ---------------------------------------------------------------- synthetic experiments


def test_holm_against_hand_computation():
    # p sorted: 0.005 (x4), 0.01 (x3), 0.03 (x2), 0.04 (x1) -> 0.02, 0.03, 0.06, max(0.06, 0.04)
    assert np.allclose(stats.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    out = stats.holm([0.01, math.nan, 0.04])  # NaN is not a test: m = 2
    assert np.isclose(out[0], 0.02) and math.isnan(out[1]) and np.isclose(out[2], 0.04)
    assert np.allclose(stats.holm([0.5, 0.6]), [1.0, 1.0])  # capped, monotone
    assert np.allclose(stats.holm([0.2]), [0.2])


def test_t_interval_matches_scipy_and_n1_has_no_ci():
    v = [1.0, 2.5, 2.0, 4.0]
    ci = stats.t_interval(v)
    lo, hi = sps.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=sps.sem(v))
    assert np.isclose(ci["ci_low"], lo) and np.isclose(ci["ci_high"], hi) and ci["n"] == 4
    one = stats.t_interval([3.0])
    assert one["n"] == 1 and one["note"] == "n=1, no CI" and math.isnan(one["ci_low"]) and one["mean"] == 3.0


def test_directions():
    assert [stats.direction(m) for m in ("psnr", "ms_ssim", "cldice", "dice")] == ["higher"] * 4
    assert [stats.direction(m) for m in ("lpips", "lpips[random-vgg]", "fid", "kid", "fd_retfound", "betti1_error",
                                         "abs_delta_average_width", "val/loss/total", "fid@20", "kid_fundus_mae@20",
                                         "fd_retfound@5000")] == ["lower"] * 11
    assert stats.direction("val/psnr") == "higher" and stats.direction("orig.density") is None
    assert stats.direction("subset_sd:kid@20") is None  # a spread, not a score
