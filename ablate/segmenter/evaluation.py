"""Scoring a segmenter on a prepared split: predict the labelled images, refuse images it was
trained on (ablate.segmenter.leakage), and score them (ablate.segmenter.scores)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ablate.segmenter.labelled import load_labelled
from ablate.segmenter.protocol import Segmenter
from ablate.segmenter.scores import evaluate_arrays, reference_scores
from ablate.segmenter.threshold import ThresholdRule, dataset_threshold, threshold_rule


def predict_arrays(seg: Segmenter, images: np.ndarray, fov: np.ndarray, batch_size: int = 4) -> np.ndarray:
    """Probabilities for (N, H, W, 3) uint8 images, `batch_size` at a time."""
    out = []
    for k in range(0, images.shape[0], batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[k : k + batch_size])).permute(0, 3, 1, 2).float() / 255
        out.append(seg.predict(x, torch.from_numpy(fov[k : k + batch_size])).cpu().numpy())
    return np.concatenate(out)


def soft_reference(data_dir: str | os.PathLike, split: str, ids: list[str]) -> tuple[np.ndarray | None, dict]:
    """The soft vessel reference of the split's images `ids` (in that order) as area fractions
    (N, S, S) float32, and the mean loss of their binary reference against it
    (`reference_area_lost_mean`, `reference_length_lost_mean`); (None, {}) for a dataset
    prepared before soft references (no vessel_soft column).

    Args:
        data_dir: the prepared dataset.
        split: its split.
        ids: the row ids of the images with a vessel mask (LabelledSplit.ids).
    """
    import pyarrow.parquet as pq

    from ablate.data.preprocess import decode_png
    from ablate.data.shards import DatasetError, shard_paths
    from ablate.data.soft_reference import fraction

    paths = shard_paths(data_dir, split, verify=False)  # load_labelled verified them just now
    if any("vessel_soft" not in pq.read_schema(p).names for p in paths):
        return None, {}
    columns = ["id", "vessel_soft", "vessel_area_lost", "vessel_length_lost"]
    rows = {r["id"]: r for p in paths for r in pq.read_table(p, columns=columns).to_pylist()}
    missing = [i for i in ids if rows.get(i, {}).get("vessel_soft") is None]
    if missing:
        raise DatasetError(f"{data_dir}: {len(missing)} image(s) of the {split} split have a vessel mask but no "
                           f"vessel_soft (e.g. id {missing[0]}); the dataset is damaged: re-run prepare")
    soft = np.stack([fraction(decode_png(rows[i]["vessel_soft"])) for i in ids])
    lost = {"reference_area_lost_mean": float(np.mean([rows[i]["vessel_area_lost"] for i in ids])),
            "reference_length_lost_mean": float(np.mean([rows[i]["vessel_length_lost"] for i in ids]))}
    return soft, lost


def evaluate_split(seg: Segmenter, data_dir: str | os.PathLike, split: str = "test",
                   threshold: ThresholdRule | str = ThresholdRule.FILE) -> dict:
    """The segmenter's metrics on a prepared split's images that have a vessel mask (inside the
    FOV), with its name, threshold (and `threshold_rule`, how it was set: threshold.py) and the
    runtime; `skipped` names the images without a mask.

    Args:
        seg: the segmenter.
        data_dir: a prepared dataset.
        split: its split to score.
        threshold: `file`, the segmenter's own; `otsu`, one set on this split's probabilities
            (its labels unused).

    Against the binary reference (Dice, AUC, ..., `cldice_binary`) and the soft one (`soft_dice`,
    `cldice_soft`; None where the dataset has none), `references` naming which is which.
    """
    import time

    from ablate.segmenter.leakage import check_not_trained_on

    rule = threshold_rule(threshold)
    lab = load_labelled(data_dir, split)
    check_not_trained_on(seg, lab.ids, lab.sources, f"{data_dir} ({split} split)")
    t0 = time.perf_counter()
    prob = predict_arrays(seg, lab.images, lab.fov)
    seconds = time.perf_counter() - t0
    t, how = dataset_threshold(rule, seg.threshold, prob, lab.fov)
    m = evaluate_arrays(prob, lab.vessel, lab.fov, t)
    soft, lost = soft_reference(data_dir, split, lab.ids)
    m.update(reference_scores(prob > t, lab.vessel, soft, lab.fov), **lost)
    return {"segmenter": seg.name, "split": split, "data": str(Path(data_dir).resolve()),
            "image_size": int(lab.images.shape[1]), "threshold": float(t), "threshold_rule": how, **m,
            "skipped": list(lab.skipped), "predict_seconds": round(seconds, 2)}
