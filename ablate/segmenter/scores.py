"""How a vessel segmenter scores against manual masks.

Metrics (`evaluate_arrays`, `evaluate_split`): inside the FOV only, pooled over
all pixels of all images: Dice of `prob > threshold` against the manual mask,
ROC AUC of `prob` (Mann-Whitney rank statistic, ties counted half: `roc_auc`),
sensitivity, specificity, accuracy; plus the mean of per-image Dice.

Two references (issue 31, ablate.data.soft_reference): those are against the binary
reference (the `vessel` column: the resized mask's area fraction >= 0.5), which loses
every vessel under half an output pixel wide. `reference_scores` adds clDice against it,
and against the soft reference (`vessel_soft`: the area fraction itself) soft Dice,
2 sum(p s) / (sum(p) + sum(s)) with p the binary prediction and s the fraction (Dice when s
is binary; the full-resolution Dice of the prediction's pixels when the downscale is whole),
and clDice on the soft reference's support (soft > 0: every pixel holding any vessel area,
the same support ablate.data.soft_reference measures the lost length on).
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


def soft_dice(pred, soft) -> float:
    """2 sum(p s) / (sum(p) + sum(s)) of a binary prediction p against soft reference fractions s
    in [0, 1]; equals `dice` when s is 0/1. 1.0 when both are empty.

    Args:
        pred: the binary prediction (any shape).
        soft: the soft reference's area fractions, the same shape.
    """
    p, f = np.asarray(pred, bool), np.asarray(soft, np.float64)
    if p.shape != f.shape:
        raise ValueError(f"prediction and soft reference differ in shape ({p.shape} vs {f.shape})")
    if f.size and (f.min() < 0 or f.max() > 1):
        raise ValueError(f"soft reference outside [0, 1] ({f.min()}..{f.max()}); pass area fractions")
    denom = float(p.sum()) + float(f.sum())
    return 1.0 if denom == 0 else 2.0 * float(f[p].sum()) / denom


def _skeleton(mask: np.ndarray) -> np.ndarray:
    from skimage.morphology import skeletonize

    return skeletonize(mask) if mask.any() else np.zeros_like(mask)


def cl_counts(pred: np.ndarray, ref: np.ndarray) -> tuple[int, int, int, int]:
    """clDice's four counts of one image (Shit et al., CVPR 2021): (|skel(pred) & ref|,
    |skel(pred)|, |skel(ref) & pred|, |skel(ref)|), skeletons by skimage's skeletonize.

    Args:
        pred: the binary prediction (2-D).
        ref: the reference mask (2-D, bool).
    """
    p, r = np.asarray(pred, bool), np.asarray(ref, bool)
    sp, sr = _skeleton(p), _skeleton(r)
    return int((sp & r).sum()), int(sp.sum()), int((sr & p).sum()), int(sr.sum())


def cldice_of_counts(counts) -> float:
    """clDice = 2 Tprec Tsens / (Tprec + Tsens) from summed `cl_counts` (pooled over images):
    Tprec the share of the prediction's skeleton inside the reference, Tsens the share of the
    reference's skeleton the prediction covers. 1.0 when both skeletons are empty, 0.0 when one is."""
    in_ref, sk_pred, covered, sk_ref = (sum(c[k] for c in counts) for k in range(4))
    if sk_pred == 0 and sk_ref == 0:
        return 1.0
    if sk_pred == 0 or sk_ref == 0:
        return 0.0
    tprec, tsens = in_ref / sk_pred, covered / sk_ref
    return 0.0 if tprec + tsens == 0 else 2 * tprec * tsens / (tprec + tsens)


def cldice(pred, ref) -> float:
    """clDice of one binary prediction against one reference mask (2-D)."""
    return cldice_of_counts([cl_counts(pred, ref)])


# What each number of `evaluate_split` is measured against.
BINARY_REFERENCE = "binary: the vessel column, the resized mask's box-filter area fraction >= 0.5"
SOFT_REFERENCE = ("soft: the vessel_soft column, the resized mask's box-filter area fraction (0..1); "
                  "clDice on the skeleton of its support (soft > 0)")
SOFT_NOT_AVAILABLE = "not available (prepared before soft references)"
BINARY_METRICS = ("dice", "dice_mean_per_image", "auc", "sensitivity", "specificity", "accuracy", "cldice_binary")
SOFT_METRICS = ("soft_dice", "cldice_soft")


def reference_scores(pred: np.ndarray, vessel: np.ndarray, soft: np.ndarray | None, fov: np.ndarray) -> dict:
    """clDice against the binary reference, and soft Dice and clDice against the soft one (None,
    and said not available, without it), inside the FOV, pooled over the (N, H, W) images; with
    `references` naming the reference of every metric of `evaluate_split`.

    Args:
        pred: the binary predictions (N, H, W).
        vessel: the binary reference (N, H, W).
        soft: the soft reference as area fractions in [0, 1] (N, H, W), or None for a dataset
            prepared before soft references.
        fov: the field of view (N, H, W).
    """
    pred, vessel, fov = (np.asarray(a, bool) for a in (pred, vessel, fov))
    pred = pred & fov
    out: dict = {"cldice_binary": cldice_of_counts([cl_counts(pred[i], vessel[i] & fov[i])
                                                    for i in range(pred.shape[0])])}
    if soft is None:
        out.update(soft_dice=None, cldice_soft=None)
    else:
        f = np.asarray(soft, np.float64)
        out["soft_dice"] = soft_dice(pred[fov], f[fov])
        out["cldice_soft"] = cldice_of_counts([cl_counts(pred[i], (f[i] > 0) & fov[i]) for i in range(pred.shape[0])])
    out["references"] = {**dict.fromkeys(BINARY_METRICS, BINARY_REFERENCE),
                         **dict.fromkeys(SOFT_METRICS, SOFT_NOT_AVAILABLE if soft is None else SOFT_REFERENCE)}
    return out


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
    """One line of `evaluate_split`'s (or training's) metrics; with `reference_scores`' keys, each
    number said against which reference; the threshold with its rule when not the file's."""
    soft = "soft_dice" in m
    cut = ""
    if "threshold" in m:
        rule = m.get("threshold_rule", "file")
        cut = f" (threshold {m['threshold']:.2f}" + ("" if rule == "file" else f", {rule}") + ")"
    line = (f"{m['segmenter']}: " + ("against the binary reference (area fraction >= 0.5): " if soft else "")
            + f"Dice {m['dice']:.4f} (mean per image {m['dice_mean_per_image']:.4f}), "
            f"ROC AUC {m['auc']:.4f}, sensitivity {m['sensitivity']:.4f}, specificity {m['specificity']:.4f}, "
            f"accuracy {m['accuracy']:.4f}" + (f", clDice {m['cldice_binary']:.4f}" if soft else "")
            + f" on {m['n_images']} {m.get('split', '')} images inside the FOV" + cut).replace("  ", " ")
    if not soft:
        return line
    if m["soft_dice"] is None:
        return line + f"; against the soft reference: {SOFT_NOT_AVAILABLE}"
    lost = ""
    if m.get("reference_area_lost_mean") is not None:
        lost = (f" (the binary reference lost {m['reference_area_lost_mean']:.1%} of the soft one's vessel area "
                f"and {m['reference_length_lost_mean']:.1%} of its skeleton length, mean per image)")
    return (line + f"; against the soft reference (area fraction): soft Dice {m['soft_dice']:.4f}, "
            f"clDice {m['cldice_soft']:.4f} (skeleton of soft > 0){lost}")
