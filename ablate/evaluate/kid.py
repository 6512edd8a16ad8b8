"""Kernel Inception Distance (Binkowski et al. 2018, as torchmetrics'
KernelInceptionDistance): unbiased MMD^2 with the cubic polynomial kernel
k(x, y) = (x . y / d + 1)^3,
  1/(m(m-1)) sum_{i!=j} k(x_i, x_j) + 1/(n(n-1)) sum_{i!=j} k(y_i, y_j) - 2/(mn) sum_{i,j} k(x_i, y_j),
averaged over `kid_subsets` (100) random subsets of `kid_subset_size` (1000)
samples drawn without replacement from each set (seeded, so reproducible), with
`kid_std` their standard deviation (ddof 0, as torchmetrics). When either set
has fewer than kid_subset_size samples (torchmetrics raises there), one "subset"
of all samples of both sets is used and no `kid_std` is reported. KID is
unbiased for *independent* sets; a set compared with itself (one subset) gives
(2/m)(mean off-diagonal k - mean diagonal k), slightly below 0, not exactly 0.

Standard form: `KID_SUBSETS` (100) subsets of `KID_SUBSET_SIZE` (1,000) per set; below
1,000 samples one "subset" of all samples (no spread). `kid_with_spread` gives a spread at
any test-set size: subsets of half the images (at most 1,000) drawn without replacement
from each set, `subsets` times; the SD over subsets shows how much of a KID difference at
this n is the choice of images. Written as test/kid_std (and test/kid_<model>_std), the
report shows it as subset_sd:kid@n. The one home of KID: `fidelity.FrechetDistance` and
`set_metrics` call it.
"""

from __future__ import annotations

import numpy as np

from ablate.checks import finite_float64
from ablate.metric_info import Better, MetricInfo

KID = MetricInfo("kid", Better.LOWER, per_set=True, about="Kernel Inception Distance")
KID_MODEL = MetricInfo("kid_", Better.LOWER, per_set=True, family=True,
                       about="KID in a foundation model's features (kid_<model>)")
METRICS = (KID, KID_MODEL)

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between samples x (m, d) and y (n, d), cubic polynomial kernel; m, n >= 2."""
    m, n = x.shape[0], y.shape[0]
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.sum() / (m * n))


def kid_subset_values(real, fake, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
                      seed: int = 0) -> np.ndarray:
    """Unbiased MMD^2 on each of `subsets` random subsets of `subset_size` per set (seeded); a single
    value from all samples when a set has fewer than subset_size samples."""
    x, y = finite_float64(real, "frechet_distance: real"), finite_float64(fake, "frechet_distance: fake")
    m, n = x.shape[0], y.shape[0]
    if min(m, n) < 2:
        raise ValueError(f"KID: need at least 2 samples per set, got {m} real and {n} generated")
    if min(m, n) < subset_size:
        return np.array([mmd2_unbiased(x, y)])
    rng = np.random.default_rng(seed)
    return np.array([
        mmd2_unbiased(x[rng.choice(m, subset_size, replace=False)], y[rng.choice(n, subset_size, replace=False)])
        for _ in range(subsets)
    ])


def kernel_inception_distance(real, fake, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
                              seed: int = 0) -> float:
    """KID: the mean of kid_subset_values (their spread: FrechetDistance reports it as kid_std)."""
    return float(kid_subset_values(real, fake, subsets, subset_size, seed).mean())


def kid_with_spread(real, fake, subsets: int = 100, seed: int = 0) -> dict:
    """{"kid": mean, "kid_std": SD (ddof 0, as torchmetrics), "kid_subset_size", "kid_subsets"}."""
    n = min(len(real), len(fake))
    if n < 4:
        raise ValueError(f"KID with a spread: need at least 4 samples per set (2 per subset), got {len(real)} "
                         f"real and {len(fake)} generated")
    size = min(KID_SUBSET_SIZE, n // 2)
    values = kid_subset_values(real, fake, subsets=subsets, subset_size=size, seed=seed)
    return {"kid": float(values.mean()), "kid_std": float(values.std()), "kid_subset_size": size,
            "kid_subsets": subsets}
