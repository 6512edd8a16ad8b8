"""Whether a generator copies its training images: each sample's distance to its nearest train
image, against the same distance for the real test images (images the model never saw,
distributed like the train images).

The test (arrays of features, or of pixels inside the FOV flattened: the caller chooses)
----------------------------------------------------------------------------------------
d(x) = min over train images t of |x - t| (Euclidean). The threshold is the test set's 5th
percentile of d, taken as an order statistic: tau = the j-th smallest of the n test images'
d, j = max(1, round(0.05 (n + 1))) (20 test images: the smallest; 100: the 5th smallest).
`share` is the share of samples with d < tau.

Samples distributed like the test images (drawn from the same distribution, independently of
the train set) are exchangeable with them, so F(tau), the chance that such a sample falls
below tau, is Beta(j, n + 1 - j) distributed: its mean, `expected_share` = j / (n + 1), is
~5 %, and the count of samples below tau is beta-binomial(M, j, n + 1 - j). That is why tau
is an order statistic and not an interpolated percentile: the null distribution is then exact
at any n, and `p_value` = P(count >= observed) under it.

`memorising` is True when share >= 2 x expected_share and p_value < 0.01. Both are needed:
- p < 0.01 guards small test sets: with 20 test images tau is the least test distance and
  F(tau) alone ranges up to ~14 % (the 95th percentile of Beta(1, 20)); a share of 12 % among
  100 samples is then what chance gives one time in ten (p = 0.10), no evidence of copying.
  The flag fires for samples distributed like the test set in at most 1 % of draws (tested).
- twice the expected share guards large sets: any model fit to the train images lies a little
  nearer to them than unseen images do, and with thousands of samples and test images a share
  of 6 % against 5 % is significant. Copying shows as a multiple of the chance share; twice
  is where one sample in ten (at 5 %) sits nearer a train image than 19 in 20 unseen images
  do, the point at which the closest pairs (`closest`) are worth looking at.
At 100 samples and 20 test images the flag needs 23 samples below tau (p = 0.009): a generator
that copies a quarter of its samples is flagged whatever the draw, one that copies a tenth is
not: 20 test images are too few to tell that from chance.

`closest` lists the samples nearest to a train image (the 8 smallest d), each with its nearest
train image and the exact distance, for the report's side-by-side grid.

Cost: exact Euclidean distances (scipy's cdist in float64) between every sample or test image
and every train image, in blocks of rows (pixel arrays are wide: 196,608 values at 256 px),
so memory stays at a block; O((M + n) T d) time. The Gram form |x|^2 + |t|^2 - 2 x.t (BLAS)
was tried and dropped: it reads a copy of a train image at a rounding error (6e-5 at feature
values ~1000, tested) instead of 0, and was no reliable gain on this project's 2-core machine
(32 samples x 200 train images, 128 px RGB, measured side by side: 2x faster,
0.11 s against 0.23 s, median of 9, with the machine quiet; 13x slower, 2.3-2.6 s against
0.17 s, blocked, under a load of 10-20).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import betabinom

from ablate.checks import finite_float64
from ablate.errors import InvalidInput
from ablate.metric_info import MetricInfo

MEMORISED_SHARE = MetricInfo(
    "memorised_share", None, per_set=True, may_vote=False,
    about="share of samples nearer their nearest train image than the test set's 5th percentile of "
          "nearest-train distance; ~0.05 for samples distributed like the test set, far above when the "
          "generator copies its train images (a check, no measure of quality: a generator of noise scores 0)")
METRICS = (MEMORISED_SHARE,)

QUANTILE = 0.05
CLOSEST = 8
ALPHA = 0.01  # the flag's false-positive rate for samples distributed like the test set, at most
RATIO = 2.0  # the share must also be this multiple of the chance share
BLOCK_BYTES = 1 << 26  # 64 MiB of float64 per block of rows


@dataclass(frozen=True)
class ClosePair:
    """A sample and its nearest train image.

    Args:
        sample: the sample's row in `samples`.
        train: the train image's row in `train`.
        distance: their Euclidean distance, computed exactly.
    """
    sample: int
    train: int
    distance: float


@dataclass(frozen=True)
class Memorisation:
    """The memorisation check's result (see the module docstring).

    Args:
        share: share of samples nearer a train image than `threshold`.
        expected_share: the share expected of samples distributed like the test set, j / (n_test + 1).
        threshold: tau, the j-th smallest nearest-train distance of the test images.
        p_value: P(a share >= `share`) for samples distributed like the test set (beta-binomial).
        memorising: share >= RATIO x expected_share and p_value < ALPHA.
        closest: the samples nearest a train image, nearest first.
        n_samples: samples checked.
        n_test: test images the threshold came from.
        n_train: train images searched.
    """
    share: float
    expected_share: float
    threshold: float
    p_value: float
    memorising: bool
    closest: tuple[ClosePair, ...]
    n_samples: int
    n_test: int
    n_train: int


def _rows(a: object, name: str) -> np.ndarray:
    if isinstance(a, np.ndarray) and a.dtype == np.float32:
        x = a  # kept as is: a pixel array in float64 would double its memory; `nearest` converts by block
        if not np.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or inf")
    else:
        x = finite_float64(a, name)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InvalidInput(f"{name}: expected a non-empty (n, d) array (features, or flattened pixels), "
                           f"got shape {x.shape}")
    return x


def nearest(queries: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of each query row's nearest train row (exact Euclidean distances in
    float64, blocks of rows so a wide pixel array is converted a block at a time)."""
    step = max(1, BLOCK_BYTES // (8 * queries.shape[1]))
    best = np.full(len(queries), np.inf)
    arg = np.zeros(len(queries), np.int64)
    for qs in range(0, len(queries), step):
        q = queries[qs:qs + step].astype(np.float64)
        for ts in range(0, len(train), step):
            d = cdist(q, train[ts:ts + step].astype(np.float64))
            i = d.argmin(axis=1)
            v = d[np.arange(len(q)), i]
            better = v < best[qs:qs + len(q)]
            best[qs:qs + len(q)][better] = v[better]
            arg[qs:qs + len(q)][better] = i[better] + ts
    return best, arg


def memorisation(samples: object, train: object, test: object, closest: int = CLOSEST) -> Memorisation:
    """The memorisation check of `samples` against the `train` images, calibrated on the `test`
    images (module docstring). All three are (n, d) arrays of one representation: features, or
    pixels (after the FOV crop) flattened.

    Args:
        samples: the generated samples (M, d).
        train: the images the generator was trained on (T, d).
        test: real images it never saw (n, d), distributed like the train images.
        closest: how many of the nearest (sample, train) pairs to return.
    """
    s, t, te = _rows(samples, "memorisation: samples"), _rows(train, "memorisation: train"), \
        _rows(test, "memorisation: test")
    if not s.shape[1] == t.shape[1] == te.shape[1]:
        raise InvalidInput(f"memorisation: samples, train and test images have {s.shape[1]}, {t.shape[1]} and "
                           f"{te.shape[1]} values per row; give all three in one representation and size")
    d_test, i_test = nearest(te, t)
    n = len(te)
    j = max(1, round(QUANTILE * (n + 1)))
    tau = float(np.sort(d_test)[j - 1])
    if tau == 0:
        copies = np.flatnonzero(d_test == 0)
        raise InvalidInput(f"memorisation: test image(s) {copies.tolist()[:10]} equal train image(s) "
                           f"{i_test[copies].tolist()[:10]} (distance 0): the test split holds train images, so "
                           "no sample can be nearer a train image than they are; remove the duplicates from "
                           "the split")
    d_s, i_s = nearest(s, t)
    count = int((d_s < tau).sum())
    m = len(s)
    expected = j / (n + 1)
    p = float(betabinom.sf(count - 1, m, j, n + 1 - j))
    order = np.argsort(d_s, kind="stable")[:closest]
    pairs = tuple(ClosePair(int(k), int(i_s[k]), float(d_s[k])) for k in order)
    share = count / m
    return Memorisation(share=share, expected_share=expected, threshold=tau, p_value=min(1.0, p),
                        memorising=bool(share >= RATIO * expected and p < ALPHA), closest=pairs,
                        n_samples=m, n_test=n, n_train=len(t))
