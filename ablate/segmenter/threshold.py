"""The U-Net's vessel threshold, set without test labels.

A sigmoid trained with BCE + soft Dice is not calibrated to 0.5: the soft-Dice term
pushes probabilities of thin vessels either way, and the best cut moves with the
augmentation. So after training the threshold is the one that maximises Dice pooled
over the val split's FOV pixels (DRIVE: 2 of its 20 training images, never trained
on), searched on a 0.01 grid. With no val split (`--include-val`) there is nothing
unseen to set it on and it stays 0.5, the cut the loss's BCE term is centred on; the
file says which rule gave its threshold (`threshold_rule`).
"""

from __future__ import annotations

import numpy as np

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
