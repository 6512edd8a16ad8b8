"""Vessel morphology of generated samples as a distribution: per vessel feature, how far the
samples' values lie from the real test images' values, beside how far two halves of the real
images lie from each other.

A sample has no original to be compared with (ablate.evaluate.morphology's agreement and
delta_<f> need one), so each feature is judged as a distribution over images:

  sample_w1_<f>       W1(samples, real) / SD(real)
  split_half_w1_<f>   mean over `splits` seeded splits of the real images into two halves A, B
                      of W1(A, B) / SD(real): the floor, what two sets of real images differ by

W1 is the Wasserstein-1 (earth mover's) distance between the two empirical distributions of
the feature (scipy.stats.wasserstein_distance: the area between the two empirical CDFs);
SD(real) the real values' standard deviation (ddof 1), so every feature reads in real SDs and
features of different units sit in one table. W1 rather than a mean difference: a generator
whose vessels are right on average but all alike (or twice as varied) is off too.

The floor is computed at the halves' sizes a = floor(N/2), b = ceil(N/2). Two empirical
distributions of sizes m, n drawn from one distribution differ by a W1 that shrinks as
sqrt(1/m + 1/n) (the two-sample empirical process converges to a Brownian bridge at that
rate), so the halves read higher than a sample set of the real set's size drawn like it would:
by sqrt(2) when M = N samples, by 2 as M grows. `split_half_at_n` rescales the floor to the
sizes being compared, split_half * sqrt((1/M + 1/N) / (1/a + 1/b)): the W1 in real SDs that
samples distributed like the real images would score, on average, at these sizes (within ~10 %
in simulation: Gaussian values, N = 20 to 100, M = N to 10 N; it reads low as M grows past N).

Missing vessels (ablate.evaluate.morphology): a feature is NaN on a map with none of what it
measures (no vessel pixel, no segment long enough). Dropping those images would let a
generator that loses the vessels in some images score on the rest alone, better than a
faithful one; so, as in feature_delta, a NaN reads the feature's least value
(morphology.FEATURE_FLOOR: 0, 1 for distance_tortuosity) in both sets. A feature NaN in
every image of both sets is undefined at this size (the fractal dimension under 32 px): NaN.
A NaN in a feature without a floor (density, the counts) is a fault upstream and is refused.
Where the real values do not vary (SD 0), there is no scale: the distances are NaN, and the
raw W1 is kept beside them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.stats import wasserstein_distance

from ablate.errors import InvalidInput
from ablate.evaluate.morphology import FEATURE_FLOOR, FEATURES
from ablate.metric_info import Better, MetricInfo

SAMPLE_W1 = MetricInfo("sample_w1_", Better.LOWER, unit="SD", per_set=True, family=True,
                       about="Wasserstein-1 distance between the samples' and the real test images' "
                             "distributions of a vessel feature, in real SDs (sample_w1_<feature>)",
                       nan_when="the feature does not vary over the real test images (SD 0), or is undefined "
                                "in every image of both sets (the fractal dimension under 32 px)")
SPLIT_HALF_W1 = MetricInfo("split_half_w1_", None, unit="SD", per_set=True, may_vote=False, family=True,
                           about="the floor beside sample_w1_<feature>: W1 between two halves of the real test "
                                 "images, in real SDs; a control, no measure of the samples",
                           nan_when=SAMPLE_W1.nan_when)
METRICS = (SAMPLE_W1, SPLIT_HALF_W1)

MIN_REAL = 4  # two per half, and an SD
# real-vs-real splits averaged: one split's floor varies by ~33 % (SD over splits / mean, measured
# on 20 and 100 Gaussian values); the mean of 10 by ~10 %
SPLITS = 10


@dataclass(frozen=True)
class FeatureDistance:
    """One feature's samples-vs-real distance and its real-vs-real floor.

    Args:
        feature: the vessel feature (one of morphology.FEATURES).
        w1: W1(samples, real) in the feature's own unit.
        real_sd: SD (ddof 1) of the real values, NaN read as the floor.
        w1_sd: w1 / real_sd (sample_w1_<feature>).
        split_half_sd: the real-vs-real floor (split_half_w1_<feature>), at the halves' sizes.
        split_half_at_n: the floor rescaled to n_samples vs n_real (module docstring).
        n_samples: samples compared.
        n_real: real images compared.
        floored_samples: samples whose value was NaN and read the feature's floor.
        floored_real: real images whose value was NaN and read the feature's floor.
    """
    feature: str
    w1: float
    real_sd: float
    w1_sd: float
    split_half_sd: float
    split_half_at_n: float
    n_samples: int
    n_real: int
    floored_samples: int
    floored_real: int


def split_halves(n: int, seed: int = 0, splits: int = SPLITS) -> list[tuple[np.ndarray, np.ndarray]]:
    """`splits` seeded random splits of range(n) into halves of n // 2 and n - n // 2 indices."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(splits):
        perm = rng.permutation(n)
        out.append((np.sort(perm[: n // 2]), np.sort(perm[n // 2:])))
    return out


def _values(table: Mapping[str, object], feature: str, which: str) -> np.ndarray:
    v = np.asarray(table[feature], dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise InvalidInput(f"sample morphology: {which}[{feature!r}] must be a non-empty 1-D array of one value per "
                           f"image, got shape {v.shape}")
    if np.isinf(v).any():
        raise ValueError(f"sample morphology: {which}[{feature!r}] contains inf")
    if np.isnan(v).any() and feature not in FEATURE_FLOOR:
        raise ValueError(f"sample morphology: {which}[{feature!r}] is NaN for image(s) "
                         f"{np.flatnonzero(np.isnan(v)).tolist()[:10]}; only {sorted(FEATURE_FLOOR)} may be NaN "
                         "(a map without what they measure): a NaN here is a fault in the feature extraction")
    return v


def _check_tables(samples: Mapping[str, object], real: Mapping[str, object]) -> list[str]:
    if set(samples) != set(real):
        raise InvalidInput(f"sample morphology: the samples' features {sorted(samples)} and the real images' "
                           f"{sorted(real)} differ; extract the same features for both")
    unknown = sorted(set(samples) - set(FEATURES))
    if unknown:
        raise InvalidInput(f"sample morphology: unknown vessel feature(s) {unknown}; the features are "
                           f"ablate.evaluate.morphology.FEATURES: {list(FEATURES)}")
    if not samples:
        raise InvalidInput("sample morphology: no features given")
    return [f for f in FEATURES if f in samples]  # FEATURES' order


def feature_distance(feature: str, samples: object, real: object, seed: int = 0,
                     splits: int = SPLITS) -> FeatureDistance:
    """The distance of one feature's sample values from its real values (module docstring).

    Args:
        feature: one of morphology.FEATURES (its floor decides what a NaN reads).
        samples: the feature on each sample (1-D, NaN where a map has none of what it measures).
        real: the feature on each real test image (1-D, at least MIN_REAL values).
        seed: seeds the real-vs-real splits.
        splits: how many splits the floor averages.
    """
    s, r = _values({feature: samples}, feature, "samples"), _values({feature: real}, feature, "real")
    if len(r) < MIN_REAL:
        raise InvalidInput(f"sample morphology: the real-vs-real floor needs at least {MIN_REAL} real images "
                           f"(2 per half), got {len(r)}")
    if splits < 1:
        raise InvalidInput(f"sample morphology: splits must be at least 1, got {splits}")
    ns, nr = int(np.isnan(s).sum()), int(np.isnan(r).sum())
    if ns == len(s) and nr == len(r):  # undefined in every image (the fractal dimension under 32 px)
        return FeatureDistance(feature, math.nan, math.nan, math.nan, math.nan, math.nan, len(s), len(r), ns, nr)
    if ns or nr:
        s, r = np.nan_to_num(s, nan=FEATURE_FLOOR[feature]), np.nan_to_num(r, nan=FEATURE_FLOOR[feature])
    w1 = float(wasserstein_distance(s, r))
    sd = float(np.std(r, ddof=1))
    if sd == 0:
        return FeatureDistance(feature, w1, sd, math.nan, math.nan, math.nan, len(s), len(r), ns, nr)
    halves = split_halves(len(r), seed, splits)
    floor = float(np.mean([wasserstein_distance(r[a], r[b]) for a, b in halves])) / sd
    a, b = len(r) // 2, len(r) - len(r) // 2
    at_n = floor * math.sqrt((1 / len(s) + 1 / len(r)) / (1 / a + 1 / b))
    return FeatureDistance(feature, w1, sd, w1 / sd, floor, at_n, len(s), len(r), ns, nr)


def morphology_distances(samples: Mapping[str, object], real: Mapping[str, object], seed: int = 0,
                         splits: int = SPLITS) -> dict[str, FeatureDistance]:
    """{feature: FeatureDistance} for every feature of the two tables, in FEATURES' order.

    Args:
        samples: {feature: 1-D array, one value per sample} (morphology.vessel_features of each
            sample's vessel map, gathered per feature).
        real: the same for the real test images; the same features, at least MIN_REAL images.
        seed: seeds the real-vs-real splits (the same splits for every feature: the halves are
            sets of images).
        splits: how many splits the floor averages.
    """
    features = _check_tables(samples, real)
    lengths = {which: {len(np.atleast_1d(np.asarray(t[f]))) for f in features}
               for which, t in (("samples", samples), ("real images", real))}
    for which, n in lengths.items():
        if len(n) != 1:
            raise InvalidInput(f"sample morphology: the {which}' features have different lengths {sorted(n)}; "
                               "each must hold one value per image")
    return {f: feature_distance(f, samples[f], real[f], seed, splits) for f in features}


def as_metrics(distances: Mapping[str, FeatureDistance]) -> dict[str, float]:
    """{"sample_w1_<f>": ..., "split_half_w1_<f>": ...}: the numbers under their metric names."""
    out: dict[str, float] = {}
    for f, d in distances.items():
        out[f"{SAMPLE_W1.name}{f}"] = d.w1_sd
        out[f"{SPLIT_HALF_W1.name}{f}"] = d.split_half_sd
    return out
