"""Fidelity and diversity of generated samples as k-nearest-neighbour manifolds in a feature
space: improved precision and recall (Kynkäänniemi et al., NeurIPS 2019, "Improved precision
and recall metric for assessing generative models") and density and coverage (Naeem et al.,
ICML 2020, "Reliable fidelity and diversity metrics for generative models").

FID and KID say how far two sets lie apart as one number; these four split it into the two
ways a generator fails: samples off the real images' manifold (low precision / density) and
real images no sample comes near (low recall / coverage, mode dropping).

Definitions (X real features (N, d), Y fake features (M, d), Euclidean distance)
-----------------------------------------------------------------------------------
r_k(x, S)   the distance from x to its k-th nearest neighbour in S, x itself excluded
            (with a duplicate of x in S, that duplicate is a neighbour at distance 0).
B(x, r)     the closed ball {y : |y - x| <= r}.
precision   (1/M) sum_j 1[ exists i: Y_j in B(X_i, r_k(X_i, X)) ]   (k = 3)
recall      (1/N) sum_i 1[ exists j: X_i in B(Y_j, r_k(Y_j, Y)) ]   (k = 3)
density     (1/(k M)) sum_j sum_i 1[ Y_j in B(X_i, r_k(X_i, X)) ]   (k = 5)
coverage    (1/N) sum_i 1[ exists j: Y_j in B(X_i, r_k(X_i, X)) ]   (k = 5)

The balls are closed (<=), as in Kynkäänniemi et al.'s own code (`distance <= radius`); the
authors' prdc package for density and coverage compares with a strict <. The two differ only
where a distance equals a radius exactly: never for continuous features, but on discrete ones
a strict test leaves a point outside the ball of its own duplicate (a set against itself would
score 0). Precision, recall and coverage lie in [0, 1]; density in [0, N / k], about 1 when
the samples are distributed like the real set, above 1 where they crowd the real images' dense
regions (so it has no better direction: it is not a share). The k defaults are the papers'.

Cost: all N x N and N x M distances are computed (scipy's cdist, exact in float64, so a tie
in hand-made points stays a tie), in blocks of real rows so memory stays at a block; the time
is O((N + M) N d). Features are used as given: no normalisation (the papers use the raw
VGG-16 / Inception embeddings).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from ablate.checks import finite_float64
from ablate.errors import InvalidInput
from ablate.metric_info import Better, MetricInfo

PRECISION = MetricInfo("precision", Better.HIGHER, per_set=True,
                       about="improved precision (Kynkäänniemi et al. 2019, k = 3): share of samples "
                             "inside a real image's k-NN ball in feature space")
RECALL = MetricInfo("recall", Better.HIGHER, per_set=True,
                    about="improved recall (Kynkäänniemi et al. 2019, k = 3): share of real images "
                          "inside a sample's k-NN ball in feature space")
DENSITY = MetricInfo("density", None, per_set=True, may_vote=False,
                     about="density (Naeem et al. 2020, k = 5): real k-NN balls holding a sample, per sample "
                           "and per k; ~1 for samples distributed like the real set, above 1 where they crowd "
                           "its dense regions, so no direction is better")
COVERAGE = MetricInfo("coverage", Better.HIGHER, per_set=True,
                      about="coverage (Naeem et al. 2020, k = 5): share of real images whose k-NN ball "
                            "holds a sample")
METRICS = (PRECISION, RECALL, DENSITY, COVERAGE)

K_PRECISION_RECALL = 3  # Kynkäänniemi et al.: k = 3 over 50,000 images
K_DENSITY_COVERAGE = 5  # Naeem et al.: k = 5
BLOCK_BYTES = 1 << 26  # 64 MiB of float64 distances per block of real rows


def _features(a: object, name: str) -> np.ndarray:
    x = finite_float64(a, name)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InvalidInput(f"{name}: expected a non-empty (n, d) feature array, got shape {x.shape}")
    return x


def _pair(real: object, fake: object, metric: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _features(real, f"{metric}: real features"), _features(fake, f"{metric}: fake features")
    if x.shape[1] != y.shape[1]:
        raise InvalidInput(f"{metric}: real features have {x.shape[1]} dimensions, fake features {y.shape[1]} "
                           "(extract both with the same network)")
    return x, y


def _need(n: int, k: int, which: str, metric: str) -> None:
    """A k-NN radius that excludes the point itself needs k other points."""
    if k < 1:
        raise InvalidInput(f"{metric}: k must be at least 1, got k = {k}")
    if n < k + 1:
        raise InvalidInput(f"{metric}: k = {k} needs at least k + 1 = {k + 1} {which} points (a point's k-th "
                           f"nearest neighbour excludes itself), got n = {n}; use more images or a smaller k")


def _blocks(n_rows: int, n_cols: int) -> range:
    return range(0, n_rows, max(1, BLOCK_BYTES // (8 * max(n_cols, 1))))


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """r_k(x_i, x) for every row: the distance to its k-th nearest other row (n >= k + 1)."""
    n = len(x)
    out = np.empty(n)
    step = _blocks(n, n).step
    for s in range(0, n, step):
        d = cdist(x[s:s + step], x)
        # each row holds its own 0 (or a duplicate's 0): the value at sorted position k is
        # the k-th nearest neighbour with the point itself excluded
        out[s:s + step] = np.partition(d, k, axis=1)[:, k]
    return out


def precision_recall(real: object, fake: object, k: int = K_PRECISION_RECALL) -> dict[str, float]:
    """{"precision", "recall"} of fake features (M, d) against real features (N, d); see the
    module docstring. Both sets need at least k + 1 points; NaN or inf features are refused.

    Args:
        real: the real images' features (N, d), an array or tensor.
        fake: the generated samples' features (M, d).
        k: the neighbour whose distance is a point's ball radius (3 in the paper).
    """
    x, y = _pair(real, fake, "precision/recall")
    _need(len(x), k, "real", "precision/recall")
    _need(len(y), k, "fake", "precision/recall")
    rx, ry = knn_radii(x, k), knn_radii(y, k)
    fake_in = np.zeros(len(y), bool)
    real_in = np.zeros(len(x), bool)
    step = _blocks(len(x), len(y)).step
    for s in range(0, len(x), step):
        d = cdist(x[s:s + step], y)  # (block of real, M)
        fake_in |= (d <= rx[s:s + step, None]).any(axis=0)
        real_in[s:s + step] = (d <= ry[None, :]).any(axis=1)
    return {"precision": float(fake_in.mean()), "recall": float(real_in.mean())}


def density_coverage(real: object, fake: object, k: int = K_DENSITY_COVERAGE) -> dict[str, float]:
    """{"density", "coverage"} of fake features (M, d) against real features (N, d); see the
    module docstring. The real set needs at least k + 1 points, the fake set one; NaN or inf
    features are refused.

    Args:
        real: the real images' features (N, d), an array or tensor.
        fake: the generated samples' features (M, d).
        k: the neighbour whose distance is a real point's ball radius (5 in the paper).
    """
    x, y = _pair(real, fake, "density/coverage")
    _need(len(x), k, "real", "density/coverage")
    rx = knn_radii(x, k)
    balls_holding = np.zeros(len(y))
    covered = np.zeros(len(x), bool)
    step = _blocks(len(x), len(y)).step
    for s in range(0, len(x), step):
        inside = cdist(x[s:s + step], y) <= rx[s:s + step, None]  # (block of real, M)
        balls_holding += inside.sum(axis=0)
        covered[s:s + step] = inside.any(axis=1)
    return {"density": float(balls_holding.sum() / (k * len(y))), "coverage": float(covered.mean())}
