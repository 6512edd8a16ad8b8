"""Scoring a segmenter on a prepared split: predict the labelled images, refuse images it was
trained on (ablate.segmenter.leakage), and score them (ablate.segmenter.scores)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ablate.segmenter.labelled import load_labelled
from ablate.segmenter.protocol import Segmenter
from ablate.segmenter.scores import evaluate_arrays
from ablate.segmenter.threshold import ThresholdRule, dataset_threshold, threshold_rule


def predict_arrays(seg: Segmenter, images: np.ndarray, fov: np.ndarray, batch_size: int = 4) -> np.ndarray:
    """Probabilities for (N, H, W, 3) uint8 images, `batch_size` at a time."""
    out = []
    for k in range(0, images.shape[0], batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[k : k + batch_size])).permute(0, 3, 1, 2).float() / 255
        out.append(seg.predict(x, torch.from_numpy(fov[k : k + batch_size])).cpu().numpy())
    return np.concatenate(out)


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
    return {"segmenter": seg.name, "split": split, "data": str(Path(data_dir).resolve()),
            "image_size": int(lab.images.shape[1]), "threshold": float(t), "threshold_rule": how, **m,
            "skipped": list(lab.skipped), "predict_seconds": round(seconds, 2)}
