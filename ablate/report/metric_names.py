"""The names of the metrics a report can judge: the sample size that distribution metrics
carry in their name, which names are the same number twice, and the floors below which a
distribution metric may not vote. What each metric is (better direction, unit, per set or
per image, whether it may vote) is declared beside the code that computes it and read
here from `ablate.evaluate.catalogue`.

Distribution metrics (FID, KID, FD in a foundation model's features) are one number per
trial, computed between the n test images and their n reconstructions. Their value
depends on n as much as on the generator (the Frechet distance is biased upwards by
roughly the features' total variance when n is far below the feature dimension; see
`FD_BIAS` and BENCHMARKS.md), so the report names them with their n: `fid@20`.
"""

from __future__ import annotations

import re

from ablate.evaluate.catalogue import lookup, vocabulary
from ablate.metric_info import MetricInfo
from ablate.report.sample_columns import sample_info

# Two names for one number: agreement() writes betti0_error = |components(R) - components(T)|,
# and abs_delta_components is |delta components| of the same two maps (likewise holes).
DUPLICATE_OF = {"abs_delta_components": "betti0_error", "abs_delta_holes": "betti1_error"}

# Below these sample sizes a distribution metric is shown but neither voted nor ranked.
# FD/FID: under n = 2,000 the sample covariance of 2,048-d Inception features is rank
# deficient and two samples of ONE distribution sit far apart (FD_BIAS); at n >= 2,000 the
# bias is small next to the differences between generators the literature reports.
# KID is unbiased at any n, but below the standard subset size of 1,000 (Binkowski et al.
# 2018; torchmetrics' default) there is one subset and no spread to judge it by.
FD_FLOOR = 2000
KID_FLOOR = 1000

# FD between two independent samples of the same 2,048-d Gaussian, as a share of the
# features' total variance tr(S): benchmarks/verdict_calibration.py --fd-bias measures it
# with ablate.evaluate.fidelity.frechet_distance_from_samples (isotropic and 1/k spectra).
# Shown in the report's warning for the n at hand (the nearest n listed).
FD_BIAS = {  # n -> (isotropic, 1/k spectrum)
    20: (1.95, 1.35),
    200: (1.49, 0.69),
    2000: (0.51, 0.17),
    5000: (0.21, 0.070),
}

_AT = re.compile(r"^(?P<base>.+)@(?P<n>\d+)$")


def base_name(metric: str) -> str:
    """`fid@20` -> `fid`; any other name unchanged."""
    m = _AT.match(metric)
    return m.group("base") if m else metric


def sample_size(metric: str) -> int | None:
    """The n in `fid@20`; None for a name without one."""
    m = _AT.match(metric)
    return int(m.group("n")) if m else None


def is_distribution(metric: str) -> bool:
    info = lookup(base_name(metric))
    return info is not None and info.per_set


def is_kid(metric: str) -> bool:
    b = base_name(metric)
    return b == "kid" or b.startswith("kid_")


def labelled(metric: str, n: int) -> str:
    """The report's name of a distribution metric computed on n images per set."""
    return f"{base_name(metric)}@{int(n)}" if is_distribution(metric) else metric


def below_floor(metric: str) -> str | None:
    """Why a distribution metric may not be voted or ranked at its n, or None."""
    if not is_distribution(metric):
        return None
    n = sample_size(metric)
    floor = KID_FLOOR if is_kid(metric) else FD_FLOOR
    if n is None:
        return f"{metric}: sample size unknown (needs n >= {floor})"
    if n < floor:
        return f"n = {n} images < {floor}"
    return None


def fd_bias_text(n: int) -> str:
    """One sentence on how far apart two samples of one distribution are at this n."""
    near = min(FD_BIAS, key=lambda k: abs(k - n))
    iso, decay = FD_BIAS[near]
    return (f"two samples of ONE distribution are FD = {iso:.2f} x tr(S) apart for isotropic 2,048-d Gaussian "
            f"features and {decay:.2f} x tr(S) for a 1/k spectrum at n = {near} (tr(S): the features' total "
            "variance; BENCHMARKS.md), so at this n FID/FD differences are mostly sample-size bias and noise")


def info(metric: str) -> MetricInfo | None:
    """The metric's declaration (`fid@20` as `fid`; `val/psnr` as `psnr`; a column of the
    sample table, `recall` or `morph_w1.density`, as ablate.report.sample_columns declares
    it); None for a name the evaluation does not write."""
    m = base_name(metric)
    return lookup(m.removeprefix("val/")) or sample_info(m)


def direction(metric: str) -> str | None:
    """"higher", "lower", or None (no better direction); `fid@20` as `fid`."""
    m = base_name(metric)
    if m.startswith("val/loss/"):  # a validation loss the trial logged
        return "lower"
    found = info(m)
    return None if found is None or found.better is None else found.better.value


def unit(metric: str) -> str:
    """The unit a difference is written in, with its leading space (" dB"; "" for unitless scores)."""
    found = info(metric)
    return f" {found.unit}" if found is not None and found.unit else ""


def canonical(metric: str) -> str:
    """One name per number: the duplicate's original (abs_delta_components -> betti0_error)."""
    return DUPLICATE_OF.get(metric, metric)


def known_metric(name: str) -> bool:
    """A name the evaluation can produce (test metrics; distribution metrics with or without @n)."""
    return lookup(base_name(name)) is not None


def may_vote(name: str) -> bool:
    """Whether the metric may be a declared primary (its declaration says; False for controls)."""
    found = lookup(base_name(name))
    return found is not None and found.may_vote


def metric_vocabulary() -> list[str]:
    return vocabulary()
