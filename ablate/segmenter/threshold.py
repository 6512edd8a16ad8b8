"""The U-Net's vessel threshold, set without test labels.

A sigmoid trained with BCE + soft Dice is not calibrated to 0.5: the soft-Dice term
pushes probabilities of thin vessels either way, and the best cut moves with the
augmentation. So after training the threshold is the one that maximises Dice pooled
over the val split's FOV pixels (DRIVE: 2 of its 20 training images, never trained
on), searched on a 0.01 grid. With no val split (`--include-val`) there is nothing
unseen to set it on and it stays 0.5, the cut the loss's BCE term is centred on; the
file says which rule gave its threshold (`threshold_rule`).

On another dataset (`ablate segmenter evaluate --threshold`, ThresholdRule): `file` (the
default) keeps that threshold; `otsu` sets one per dataset from its unlabelled images, Otsu's
threshold of the histogram of the probabilities at all FOV pixels of all the images scored
(pooled: one threshold for the dataset, as the file's is one for all). Measured on STARE
(benchmarks/segmenter_transfer.py, BENCHMARKS.md), Otsu lost Dice against the file's
threshold for every one of the 12 U-Nets trained on DRIVE (by 0.001-0.057; it cuts near 0.45,
the val split's Dice put the file's cut at 0.46-0.78), so it is not the default and
evaluation's vessel maps keep the file's. Matching DRIVE's training vessel fraction instead
(measured there too, not offered) assumes every dataset has as much vessel inside its FOV;
STARE has 8.8 % against DRIVE's 11.7 % (manual masks at 128 px), and it lost for 10 of the 12.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from ablate.errors import InvalidInput

GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


def best_threshold(prob: np.ndarray, vessel: np.ndarray, fov: np.ndarray, grid: np.ndarray = GRID) -> tuple[float, float]:
    """(threshold, pooled Dice at it) maximising Dice over the FOV pixels of (N, H, W) arrays.
    Ties go to the threshold nearest 0.5."""
    fov = np.asarray(fov, bool)
    s = np.asarray(prob, np.float32)[fov]
    y = np.asarray(vessel, bool)[fov]
    if not y.any():
        raise ValueError("choosing a threshold needs vessel pixels inside the FOV; the masks hold none")
    # Counts above each threshold from one sort instead of one pass per threshold.
    order = np.sort(s)
    pos = np.sort(s[y])
    n_pred = s.size - np.searchsorted(order, grid, side="right")
    tp = pos.size - np.searchsorted(pos, grid, side="right")
    dice = 2 * tp / np.maximum(1, n_pred + pos.size)
    best = np.flatnonzero(dice >= dice.max() - 1e-12)
    k = best[np.argmin(np.abs(grid[best] - 0.5))]
    return float(grid[k]), float(dice[k])


class ThresholdRule(str, Enum):
    FILE = "file"  # the segmenter's own threshold (a U-Net's: set on its val split at training)
    OTSU = "otsu"  # Otsu on the pooled probabilities inside the FOVs of the images scored


OTSU_BINS = 256


def threshold_rule(value: ThresholdRule | str) -> ThresholdRule:
    """`value` as a ThresholdRule; InvalidInput naming the option and the choices otherwise."""
    try:
        return ThresholdRule(value)
    except ValueError:
        raise InvalidInput(f"threshold must be one of {[r.value for r in ThresholdRule]}, got {value!r}") from None


def otsu_threshold(prob: np.ndarray, fov: np.ndarray, nbins: int = OTSU_BINS) -> float:
    """Otsu's threshold of the probabilities of (N, H, W) maps at their FOV pixels, pooled: the
    cut between `nbins` equal bins on [0, 1] that maximises the between-class variance
    (w0 w1 (mu0 - mu1)^2, bin centres standing for their values), returned as the upper edge of
    the last bin below it, so `prob > threshold` is exactly the upper class. Ties: the lowest
    cut. No labels used. (scikit-image's `threshold_otsu` returns a bin centre, which can leave
    part of its own bin on the wrong side of `>`.)"""
    s = np.clip(np.asarray(prob, np.float64)[np.asarray(fov, bool)], 0, 1)
    counts, edges = np.histogram(s, bins=nbins, range=(0.0, 1.0))
    if s.size == 0 or np.count_nonzero(counts) < 2:
        raise ValueError("Otsu's threshold needs probabilities that vary inside the FOV; these are "
                         + ("empty" if s.size == 0 else f"all in one bin of width 1/{nbins} (about {s.mean():.4g})"))
    p = counts / s.size
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)[:-1]  # class 0: bins 0..k
    m0 = np.cumsum(p * centres)[:-1]
    mean = float((p * centres).sum())
    w1 = 1 - w0
    valid = (w0 > 0) & (w1 > 1e-12)
    between = np.where(valid, (mean * w0 - m0) ** 2 / np.where(valid, w0 * w1, 1), -1.0)
    return float(edges[int(np.argmax(between)) + 1])


def dataset_threshold(rule: ThresholdRule, own: float, prob: np.ndarray, fov: np.ndarray) -> tuple[float, str]:
    """(threshold, how it was set) for a dataset's (N, H, W) probability maps under `rule`;
    `own`: the segmenter's threshold (the `file` rule's)."""
    if rule is ThresholdRule.FILE:
        return float(own), "file"
    if rule is ThresholdRule.OTSU:
        return otsu_threshold(prob, fov), f"otsu on the pooled probabilities of {len(prob)} unlabelled image(s)"
    raise InvalidInput(f"unknown threshold rule {rule!r}")
