"""How a vessel segmenter scores against manual masks.

Metrics (`evaluate_arrays`, `evaluate_split`): inside the FOV only, pooled over
all pixels of all images: Dice of `prob > threshold` against the manual mask,
ROC AUC of `prob` (Mann-Whitney rank statistic, ties counted half: `roc_auc`),
sensitivity, specificity, accuracy; plus the mean of per-image Dice.
"""

from __future__ import annotations

import numpy as np


def roc_auc(scores, labels) -> float:
    """ROC AUC = P(score of a random positive > that of a random negative), ties counting 1/2
    (Mann-Whitney U from average ranks)."""
    from scipy.stats import rankdata

    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in size ({s.size} vs {y.size})")
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("ROC AUC needs both positive and negative pixels")
    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def dice(pred, target) -> float:
    p, t = np.asarray(pred, bool), np.asarray(target, bool)
    denom = int(p.sum()) + int(t.sum())
    return 1.0 if denom == 0 else 2.0 * int((p & t).sum()) / denom


def evaluate_arrays(prob: np.ndarray, vessel: np.ndarray, fov: np.ndarray, threshold: float) -> dict[str, float]:
    """Metrics inside the FOV of (N, H, W) probabilities against (N, H, W) manual masks."""
    prob, vessel, fov = np.asarray(prob), np.asarray(vessel, bool), np.asarray(fov, bool)
    pred = prob > threshold
    s, y, b = prob[fov], vessel[fov], pred[fov]
    tp, fp, fn = int((b & y).sum()), int((b & ~y).sum()), int((~b & y).sum())
    tn = int(y.size - tp - fp - fn)
    per_image = [dice(pred[i][fov[i]], vessel[i][fov[i]]) for i in range(prob.shape[0])]
    return {
        "dice": dice(b, y),
        "auc": roc_auc(s, y),
        "dice_mean_per_image": float(np.mean(per_image)),
        "sensitivity": tp / max(1, tp + fn),
        "specificity": tn / max(1, tn + fp),
        "accuracy": (tp + tn) / max(1, y.size),
        "n_images": int(prob.shape[0]),
    }


def format_metrics(m: dict) -> str:
    cut = ""
    if "threshold" in m:
        rule = m.get("threshold_rule", "file")
        cut = f" (threshold {m['threshold']:.2f}" + ("" if rule == "file" else f", {rule}") + ")"
    return (f"{m['segmenter']}: Dice {m['dice']:.4f} (mean per image {m['dice_mean_per_image']:.4f}), "
            f"ROC AUC {m['auc']:.4f}, sensitivity {m['sensitivity']:.4f}, specificity {m['specificity']:.4f}, "
            f"accuracy {m['accuracy']:.4f} on {m['n_images']} {m.get('split', '')} images inside the FOV"
            + cut).replace("  ", " ")
