"""Improved precision / recall and density / coverage (ablate.evaluate.sample_manifold):
hand-counted balls on a few points, a set against itself, Gaussians apart, overlapping and
collapsed, a brute-force loop over the papers' formulas, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.errors import InvalidInput
from ablate.evaluate import sample_manifold
from ablate.evaluate.sample_manifold import density_coverage, knn_radii, precision_recall


def col(*v: float) -> np.ndarray:
    return np.array(v, float)[:, None]


# 1-D, k = 1. Real 0, 1, 5, 6, 20, 21: every radius is 1, balls [-1,1] [0,2] [4,6] [5,7] [19,21] [20,22].
# Fake 1, 3, 5.5, 9: radii 2, 2, 2.5, 3.5, balls [-1,3] [1,5] [3,8] [5.5,12.5].
REAL_1D = col(0, 1, 5, 6, 20, 21)
FAKE_1D = col(1, 3, 5.5, 9)


def test_radii_exclude_the_point_itself():
    assert knn_radii(REAL_1D, 1).tolist() == [1, 1, 1, 1, 1, 1]
    assert knn_radii(FAKE_1D, 1).tolist() == [2, 2, 2.5, 3.5]
    assert knn_radii(REAL_1D, 2).tolist() == [5, 4, 4, 5, 14, 15]


def test_hand_counted_1d():
    # precision: 1 lies in balls [-1,1] and [0,2], 5.5 in [4,6] and [5,7]; 3 and 9 in none -> 2/4
    # recall: real 0, 1 in [-1,3]; 5 in [1,5] and [3,8]; 6 in [3,8]; 20, 21 in none -> 4/6
    assert precision_recall(REAL_1D, FAKE_1D, k=1) == {"precision": 0.5, "recall": 4 / 6}
    # density: fakes lie in 2 + 0 + 2 + 0 real balls, / (k M) = 4 / 4; coverage: the balls of 0, 1, 5, 6
    # hold a fake, those of 20, 21 none -> 4/6
    assert density_coverage(REAL_1D, FAKE_1D, k=1) == {"density": 1.0, "coverage": 4 / 6}


def test_hand_counted_2d_square():
    # unit square corners, k = 2: neighbours at 1, 1, sqrt 2 -> every radius 1.
    real = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], float)
    # (0.5, 0.5) is sqrt(0.5) from each corner: 4 balls; (2, 0) is 1 from (1, 0): 1 ball (closed);
    # (3, 3) none. Fake radii (k = 2): 3.536, 3.536, 3.536 -> every corner is within one
    fake = np.array([[0.5, 0.5], [2, 0], [3, 3]], float)
    pr = precision_recall(real, fake, k=2)
    assert pr["precision"] == pytest.approx(2 / 3) and pr["recall"] == 1.0
    dc = density_coverage(real, fake, k=2)
    assert dc["density"] == pytest.approx((4 + 1 + 0) / (2 * 3)) and dc["coverage"] == 1.0


def test_the_balls_are_closed():
    # real 0, 1 (k = 1: balls [-1,1], [0,2]); a fake at 2 lies on the second ball's edge
    assert precision_recall(col(0, 1), col(2, 3), k=1)["precision"] == 0.5
    assert density_coverage(col(0, 1), col(2), k=1) == {"density": 1.0, "coverage": 0.5}
    # discrete features: duplicates have radius 0, and a copy of the set still lies in its own balls
    dup = col(0, 0, 1, 1)
    assert precision_recall(dup, dup, k=1) == {"precision": 1.0, "recall": 1.0}


def test_a_set_against_itself():
    x = np.random.default_rng(0).normal(size=(60, 5))
    assert precision_recall(x, x) == {"precision": 1.0, "recall": 1.0}
    dc = density_coverage(x, x)
    # each real ball holds its own point and its k neighbours (points in general position):
    # sum over fakes of balls holding them = N (k + 1), density = (k + 1) / k
    assert dc["coverage"] == 1.0 and dc["density"] == pytest.approx(6 / 5)


def test_well_separated_gaussians_score_zero():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(200, 8)), rng.normal(size=(200, 8)) + 10
    assert precision_recall(real, fake) == {"precision": 0.0, "recall": 0.0}
    assert density_coverage(real, fake) == {"density": 0.0, "coverage": 0.0}


def test_overlap_orders_the_scores():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(300, 4))
    base = rng.normal(size=(300, 4))
    scores = [{**precision_recall(real, base + shift), **density_coverage(real, base + shift)}
              for shift in (0.0, 0.5, 1.0, 2.0)]
    for key in ("precision", "recall", "density", "coverage"):
        values = [s[key] for s in scores]
        # recall falls slowest: the shifted set's outliers have wide balls that still reach the real set
        assert values == sorted(values, reverse=True) and values[0] > 1.5 * values[-1], (key, values)
    assert scores[0]["precision"] > 0.6 and scores[0]["recall"] > 0.6 and scores[0]["coverage"] > 0.8


def test_a_collapsed_generator_keeps_precision_and_loses_recall():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(300, 4))
    collapsed = 0.2 * rng.normal(size=(300, 4))  # every sample near the mode
    pr, dc = precision_recall(real, collapsed), density_coverage(real, collapsed)
    assert pr["precision"] > 0.95 and pr["recall"] < 0.2
    assert dc["coverage"] < 0.4  # the real images away from the mode hold no sample


def _brute_force(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int) -> dict[str, float]:
    """The papers' formulas as loops over points (radius: the k-th smallest distance to the others)."""
    def radius(s, i, k):
        return sorted(np.linalg.norm(s[i] - s[j]) for j in range(len(s)) if j != i)[k - 1]

    def inside(p, centre, r):
        return np.linalg.norm(p - centre) <= r

    rr = [radius(real, i, k_pr) for i in range(len(real))]
    rf = [radius(fake, j, k_pr) for j in range(len(fake))]
    rd = [radius(real, i, k_dc) for i in range(len(real))]
    return {
        "precision": np.mean([any(inside(y, real[i], rr[i]) for i in range(len(real))) for y in fake]),
        "recall": np.mean([any(inside(x, fake[j], rf[j]) for j in range(len(fake))) for x in real]),
        "density": sum(inside(y, real[i], rd[i]) for y in fake for i in range(len(real))) / (k_dc * len(fake)),
        "coverage": np.mean([any(inside(y, real[i], rd[i]) for y in fake) for i in range(len(real))]),
    }


@pytest.mark.parametrize("block_bytes", [sample_manifold.BLOCK_BYTES, 8 * 30 * 7])  # one block; blocks of 7 rows
def test_agrees_with_the_formulas_written_as_loops(monkeypatch, block_bytes):
    monkeypatch.setattr(sample_manifold, "BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(30, 3)), rng.normal(size=(25, 3)) * 1.3 + 0.4
    got = {**precision_recall(real, fake), **density_coverage(real, fake)}
    want = _brute_force(real, fake, 3, 5)
    assert got == pytest.approx(want, abs=1e-12)
    assert 0 < got["precision"] < 1 and 0 < got["recall"] < 1 and 0 < got["coverage"] < 1


@pytest.mark.bad_input
def test_too_few_points_for_k_are_refused():
    with pytest.raises(InvalidInput, match=r"k = 3 needs at least k \+ 1 = 4 real points .* got n = 3"):
        precision_recall(np.zeros((3, 2)), np.ones((10, 2)))
    with pytest.raises(InvalidInput, match=r"k = 3 needs at least k \+ 1 = 4 fake points .* got n = 2"):
        precision_recall(np.ones((10, 2)), np.zeros((2, 2)))
    with pytest.raises(InvalidInput, match=r"k = 5 needs at least k \+ 1 = 6 real points .* got n = 5"):
        density_coverage(np.zeros((5, 2)), np.ones((10, 2)))
    assert density_coverage(np.arange(6.0)[:, None], col(2.5), k=5)["coverage"] == 1.0  # one sample is enough


@pytest.mark.bad_input
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_features_are_refused(bad):
    x = np.random.default_rng(5).normal(size=(10, 3))
    y = x.copy()
    y[4, 1] = bad
    with pytest.raises(ValueError, match="fake features contains NaN or inf"):
        precision_recall(x, y)
    with pytest.raises(ValueError, match="real features contains NaN or inf"):
        density_coverage(y, x)


@pytest.mark.bad_input
def test_shapes_are_checked():
    with pytest.raises(InvalidInput, match="real features have 3 dimensions, fake features 4"):
        precision_recall(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(InvalidInput, match=r"expected a non-empty \(n, d\) feature array, got shape \(10,\)"):
        density_coverage(np.zeros(10), np.zeros((10, 1)))
