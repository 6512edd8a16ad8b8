"""The names of the metrics a report can judge: which exist, which are the same number
twice, and the sample size that distribution metrics carry in their name.

Kept free of torch and pandas so the search-space parser (ablate.config) can validate
declared metric names without loading the report.

Distribution metrics (FID, KID, FD in a foundation model's features) are one number per
trial, computed between the n test images and their n reconstructions. Their value
depends on n as much as on the generator (the Frechet distance is biased upwards by
roughly the features' total variance when n is far below the feature dimension; see
`FD_BIAS` and BENCHMARKS.md), so the report names them with their n: `fid@20`.
"""

from __future__ import annotations

import re

# psnr / ssim / ms_ssim are computed inside the FOV (ablate.evaluate.fov_fidelity); the
# whole-image values, black surround included, are the secondary `<name>_whole`.
PER_IMAGE = ("psnr", "ssim", "ms_ssim", "psnr_whole", "ssim_whole", "ms_ssim_whole", "lpips", "lpips[random-vgg]",
             "dice", "cldice", "betti0_error", "betti1_error", "betti0_patch64_error", "betti1_patch64_error",
             "vessel_sharpness", "vessel_contrast")
SET_LEVEL = ("fid", "kid")  # plus fd_<model> and kid_<model>

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
    b = base_name(metric)
    return b in SET_LEVEL or b.startswith(("fd_", "kid_"))


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


# vessel_sharpness / vessel_contrast: reconstruction / original; a reconstruction blurs, so
# higher (towards 1) is better; above 1 is steeper than the original (ablate.evaluate.sharpness).
HIGHER = ("psnr", "ssim", "ms_ssim", "psnr_whole", "ssim_whole", "ms_ssim_whole", "dice", "cldice",
          "vessel_sharpness", "vessel_contrast")
LOWER_EXACT = ("fid", "kid", "betti0_error", "betti1_error", "betti0_patch64_error", "betti1_patch64_error")
LOWER_PREFIX = ("lpips", "fd_", "kid_", "abs_delta_")


def direction(metric: str) -> str | None:
    """"higher", "lower", or None (no better direction); `fid@20` as `fid`."""
    m = base_name(metric)
    if m.startswith("val/"):
        m = m[len("val/"):]
        if m.startswith("loss/"):
            return "lower"
    if m in HIGHER:
        return "higher"
    if m in LOWER_EXACT or m.startswith(LOWER_PREFIX):
        return "lower"
    return None


def unit(metric: str) -> str:
    """The unit a difference is written in ("" for unitless scores)."""
    return " dB" if base_name(metric) in ("psnr", "psnr_whole", "val/psnr") else ""


def canonical(metric: str) -> str:
    """One name per number: the duplicate's original (abs_delta_components -> betti0_error)."""
    return DUPLICATE_OF.get(metric, metric)


def known_metric(name: str) -> bool:
    """A name the evaluation can produce (test metrics; distribution metrics with or without @n)."""
    from ablate.evaluate.morphology import FEATURES  # late: numpy/scipy/skimage, only when validating

    b = base_name(name)
    if b in PER_IMAGE or b in SET_LEVEL:
        return True
    if b.startswith(("fd_", "kid_")) and len(b) > 3:
        return True
    return b.startswith("abs_delta_") and b[len("abs_delta_"):] in FEATURES


def metric_vocabulary() -> list[str]:
    from ablate.evaluate.morphology import FEATURES

    return list(PER_IMAGE) + [f"abs_delta_{f}" for f in FEATURES] + ["fid", "kid", "fd_<model>", "kid_<model>"]
