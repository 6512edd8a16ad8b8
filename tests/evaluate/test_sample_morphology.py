"""Vessel morphology of samples as a distribution (ablate.evaluate.sample_morphology): W1 as
scipy computes it, over the real SD; the split-half floor; the NaN rule that keeps lost vessels
from scoring better; the refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from ablate.errors import InvalidInput
from ablate.evaluate.morphology import FEATURE_FLOOR, FEATURES
from ablate.evaluate.sample_morphology import (
    SAMPLE_W1,
    SPLIT_HALF_W1,
    as_metrics,
    feature_distance,
    morphology_distances,
    split_halves,
)


def table(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    """Plausible per-image vessel features of n images (DRIVE-like scales)."""
    return {
        "density": rng.normal(0.12, 0.015, n) + 0.01 * shift,
        "vessel_width": rng.normal(3.5, 0.3, n) + 0.3 * shift,
        "distance_tortuosity": 1 + rng.gamma(2.0, 0.02, n) + 0.02 * shift,
        "branch_points": rng.poisson(120, n).astype(float) + 10 * shift,
    }


def test_w1_is_scipys_over_the_real_sd():
    rng = np.random.default_rng(0)
    s, r = rng.normal(1.0, 2.0, 37), rng.normal(0.0, 1.5, 23)
    d = feature_distance("vessel_width", s, r)
    assert d.w1 == pytest.approx(wasserstein_distance(s, r), rel=1e-12)
    assert d.real_sd == pytest.approx(np.std(r, ddof=1), rel=1e-12)
    assert d.w1_sd == pytest.approx(wasserstein_distance(s, r) / np.std(r, ddof=1), rel=1e-12)
    assert (d.n_samples, d.n_real, d.floored_samples, d.floored_real) == (37, 23, 0, 0)


def test_hand_computed_w1():
    # two point masses: W1 moves every unit of mass by the shift; the real SD (ddof 1) of 0, 0, 2, 2 is sqrt(4 / 3)
    real = np.array([0.0, 0.0, 2.0, 2.0])
    d = feature_distance("density", real + 0.5, real)
    assert d.w1 == pytest.approx(0.5) and d.real_sd == pytest.approx(math.sqrt(4 / 3))
    assert d.w1_sd == pytest.approx(0.5 / math.sqrt(4 / 3))


def test_identical_distributions_score_zero():
    r = np.random.default_rng(1).normal(size=40)
    assert feature_distance("density", r, r).w1_sd == 0.0
    assert feature_distance("density", r[::-1].copy(), r).w1_sd == 0.0  # the order of images does not matter
    assert feature_distance("density", np.repeat(r, 3), r).w1_sd == pytest.approx(0.0, abs=1e-15)


def test_floor_is_the_mean_split_half_w1():
    rng = np.random.default_rng(2)
    r = rng.normal(size=21)
    d = feature_distance("vessel_width", rng.normal(size=30), r, seed=7, splits=5)
    halves = split_halves(21, seed=7, splits=5)
    assert [(len(a), len(b)) for a, b in halves] == [(10, 11)] * 5
    assert all(sorted(np.concatenate([a, b]).tolist()) == list(range(21)) for a, b in halves)
    assert len({tuple(a) for a, _ in halves}) == 5  # five different splits
    want = np.mean([wasserstein_distance(r[a], r[b]) for a, b in halves]) / np.std(r, ddof=1)
    assert d.split_half_sd == pytest.approx(want, rel=1e-12)
    one = feature_distance("vessel_width", r, r, seed=7, splits=1)
    a, b = halves[0]
    assert one.split_half_sd == pytest.approx(wasserstein_distance(r[a], r[b]) / np.std(r, ddof=1), rel=1e-12)
    # deterministic with the seed, and the seed matters
    assert feature_distance("vessel_width", r, r, seed=7).split_half_sd == \
        feature_distance("vessel_width", r, r, seed=7).split_half_sd
    assert feature_distance("vessel_width", r, r, seed=8).split_half_sd != \
        feature_distance("vessel_width", r, r, seed=7).split_half_sd


def test_floor_rescaled_to_the_set_sizes_predicts_the_null():
    """Samples drawn like the real images score, on average, the rescaled floor (the raw floor,
    at half the real set, reads higher)."""
    rng = np.random.default_rng(3)
    w1, floor, at_n = [], [], []
    for _ in range(150):
        d = feature_distance("density", rng.normal(size=60), rng.normal(size=60), seed=int(rng.integers(1 << 30)))
        w1.append(d.w1_sd), floor.append(d.split_half_sd), at_n.append(d.split_half_at_n)
    assert np.mean(at_n) == pytest.approx(np.mean(w1), rel=0.15)
    assert np.mean(floor) == pytest.approx(math.sqrt(2) * np.mean(w1), rel=0.15)
    # a shifted generator scores far above its floor
    d = feature_distance("density", rng.normal(1.0, 1.0, 60), rng.normal(size=60))
    assert d.w1_sd > 3 * d.split_half_at_n


def test_distances_order_with_the_shift():
    rng = np.random.default_rng(4)
    real = table(rng, 40)
    out = [morphology_distances(table(rng, 40, shift), real) for shift in (0.0, 1.0, 3.0)]
    assert list(out[0]) == ["density", "vessel_width", "distance_tortuosity", "branch_points"]  # FEATURES' order
    for f in out[0]:
        assert out[0][f].w1_sd < out[1][f].w1_sd < out[2][f].w1_sd, f
        assert out[0][f].split_half_sd == out[2][f].split_half_sd  # the floor is the real images' own
    metrics = as_metrics(out[1])
    assert metrics[f"{SAMPLE_W1.name}vessel_width"] == out[1]["vessel_width"].w1_sd
    assert metrics[f"{SPLIT_HALF_W1.name}density"] == out[1]["density"].split_half_sd
    assert len(metrics) == 8


def lose_vessels(t: dict[str, np.ndarray], images: np.ndarray) -> dict[str, np.ndarray]:
    """The feature table of the same images with no vessel left in `images`: as
    morphology.vessel_features reads an empty map (0 for density and counts, NaN for the rest)."""
    out = {k: v.copy() for k, v in t.items()}
    for k, v in out.items():
        v[images] = math.nan if k in FEATURE_FLOOR else 0.0
    return out


def test_nan_reads_the_floor_so_lost_vessels_cannot_look_better():
    rng = np.random.default_rng(5)
    real = table(rng, 40)
    faithful = {k: v.copy() for k, v in real.items()}
    lost = lose_vessels(faithful, np.arange(0, 40, 4))  # every 4th sample has no vessel
    good, bad = morphology_distances(faithful, real), morphology_distances(lost, real)
    for f in ("vessel_width", "distance_tortuosity"):
        assert good[f].w1_sd == 0.0 and bad[f].w1_sd > 0.2, f
        assert bad[f].floored_samples == 10 and bad[f].floored_real == 0
        floored = np.nan_to_num(lost[f], nan=FEATURE_FLOOR[f])
        assert bad[f].w1 == pytest.approx(wasserstein_distance(floored, real[f]), rel=1e-12)
        # dropping the NaN images would have scored the survivors, a subset of the real values: far better
        assert wasserstein_distance(lost[f][~np.isnan(lost[f])], real[f]) < 0.5 * bad[f].w1
    # a real image without vessels reads the floor too (its SD includes it)
    real_lost = lose_vessels(real, np.array([3]))
    d = feature_distance("vessel_width", real["vessel_width"], real_lost["vessel_width"])
    assert d.floored_real == 1
    assert d.real_sd == pytest.approx(np.std(np.nan_to_num(real_lost["vessel_width"], nan=0.0), ddof=1))


def test_a_feature_undefined_everywhere_is_nan_and_one_without_spread_has_no_scale():
    nan = np.full(10, math.nan)
    d = feature_distance("fractal_dimension", nan, nan)
    assert math.isnan(d.w1_sd) and math.isnan(d.split_half_sd) and math.isnan(d.w1)
    # no hole in any real image: W1 is kept, its SD-scaled form is NaN
    d = feature_distance("holes", np.array([0.0, 1, 2, 0]), np.zeros(6))
    assert d.w1 == pytest.approx(0.75) and d.real_sd == 0 and math.isnan(d.w1_sd) and math.isnan(d.split_half_sd)
    assert SAMPLE_W1.nan_when and SPLIT_HALF_W1.may_vote is False


@pytest.mark.bad_input
def test_bad_tables_are_refused():
    rng = np.random.default_rng(6)
    real = table(rng, 10)
    with pytest.raises(InvalidInput, match=r"the samples' features .* differ"):
        morphology_distances({"density": real["density"]}, real)
    with pytest.raises(InvalidInput, match=r"unknown vessel feature\(s\) \['sharpness'\]"):
        morphology_distances({"sharpness": np.ones(5)}, {"sharpness": np.ones(5)})
    with pytest.raises(InvalidInput, match="needs at least 4 real images .* got 3"):
        feature_distance("density", np.ones(5), np.arange(3.0))
    uneven = {**real, "density": real["density"][:-1]}
    with pytest.raises(InvalidInput, match="real images' features have different lengths"):
        morphology_distances(real, uneven)
    with pytest.raises(ValueError, match=r"samples\['density'\] is NaN for image\(s\) \[2\]"):
        feature_distance("density", np.array([0.1, 0.1, math.nan]), real["density"])
    with pytest.raises(ValueError, match=r"real\['vessel_width'\] contains inf"):
        feature_distance("vessel_width", np.ones(5), np.array([1.0, 2, 3, math.inf]))
    assert set(FEATURE_FLOOR) < set(FEATURES)
