"""A trial's whole-test-set numbers (FID, KID and its spread, the Fréchet distance in the
foundation model's features) from its and the originals' features, at any test-set size.

Each needs a minimum number of images (issue 25, finding 2): a covariance needs 2 (FID, FD),
an unbiased MMD^2 needs 2 (KID), and KID's spread over subsets of half the images needs 4
(2 per subset, ablate.evaluate.kid). Below its minimum a metric is NaN, "not computable at
n = k", with a note naming the metric, n and the minimum; the others are still computed.
A 3-image test split used to end the whole evaluation at its last step, writing nothing.
"""

from __future__ import annotations

import math

import numpy as np

MINIMUM = {"fid": 2, "kid": 2, "kid_std": 4, "fd": 2}  # images per set
LABELS = {"fid": "FID", "kid": "KID", "kid_std": "KID's spread over subsets (kid_std)", "fd": "Frechet distance"}


def not_computable(metric: str, n: int, label: str | None = None) -> str:
    return (f"{label or LABELS[metric]} not computable at n = {n} test image(s): it needs at least "
            f"{MINIMUM[metric]}; NaN in the tables")


def set_metrics(real_inc: np.ndarray | None, fake_inc: np.ndarray | None, real_fm: np.ndarray | None = None,
                fake_fm: np.ndarray | None = None, fm_name: str | None = None) -> tuple[dict, list[str]]:
    """({"test/fid", "test/kid", "test/kid_std"[, "test/fd_<fm_name>"]}: floats, NaN where not
    computable; the notes saying which and why). Inception features of None (the FID Inception
    is not installed here: evaluate/arguments.py notes it once) give NaN FID and KID."""
    from ablate.evaluate.fidelity import frechet_distance_from_samples
    from ablate.evaluate.kid import kernel_inception_distance, kid_with_spread

    out: dict[str, float] = {}
    notes: list[str] = []

    def computable(metric: str, n: int, label: str | None = None) -> bool:
        if n >= MINIMUM[metric]:
            return True
        notes.append(not_computable(metric, n, label))
        return False

    if real_inc is None or fake_inc is None:
        out.update({"test/fid": math.nan, "test/kid": math.nan, "test/kid_std": math.nan})
    else:
        n = min(len(real_inc), len(fake_inc))
        out["test/fid"] = frechet_distance_from_samples(real_inc, fake_inc) if computable("fid", n) else math.nan
        if n >= MINIMUM["kid_std"]:
            kid = kid_with_spread(real_inc, fake_inc)  # subsets of half the images: a spread at any n >= 4
            out["test/kid"], out["test/kid_std"] = kid["kid"], kid["kid_std"]
        else:
            # One unbiased MMD^2 over all images, as the standard subset size gives below 1,000 images.
            out["test/kid"] = kernel_inception_distance(real_inc, fake_inc) if computable("kid", n) else math.nan
            out["test/kid_std"] = math.nan
            if n >= MINIMUM["kid"]:
                computable("kid_std", n)
    if real_fm is not None and fake_fm is not None:
        n = min(len(real_fm), len(fake_fm))
        label = f"Frechet distance in {fm_name} features (fd_{fm_name})"
        out[f"test/fd_{fm_name}"] = (frechet_distance_from_samples(real_fm, fake_fm) if computable("fd", n, label)
                                     else math.nan)
    return out, notes
