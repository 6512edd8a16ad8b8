"""How far the vessel judge can be trusted on the images it judges (issue 31).

Every vessel metric of a reconstruction is read through a vessel segmenter, trained on one
camera (DRIVE) and scored there; evaluation may run it on another. So each evaluation
measures the judge on the ORIGINALS of the split it evaluates, once per image size:

- its agreement with the classical ridge map (`ridge:meijering+otsu`, the fallback): the
  mean over images of the Dice between the two vessel maps inside the FOV, both as
  evaluation draws them (thresholded, the FOV rim band empty: evaluate/reconstruct.py's
  `vessel_maps`). Measurable on any data; not measured when the judge is a ridge filter
  itself (it would be compared with itself);
- where the split has manual vessel masks (DRIVE, STARE), the judge's Dice and ROC AUC
  against them, pooled over the pixels inside the FOV of every labelled image, exactly as
  `ablate segmenter evaluate` computes them (segmenter/scores.py `evaluate_arrays`: Dice of
  `prob > threshold`, no rim band), and the ridge filter's Dice on the same masks beside it.

The record is one `JudgeReliability` per image size in eval/notes.json (`judge`); the
report puts it beside every vessel verdict and cautions when it is low (report/judge_line.py).
"""

from __future__ import annotations

import numpy as np

from ablate.segmenter.scores import dice, evaluate_arrays

RIDGE_SPEC = "ridge"  # the map the judge is compared with: the Meijering fallback, as `--segmenter ridge`


def is_ridge(seg) -> bool:
    """A ridge-filter segmenter (either family): the judge's agreement with the ridge map is not measured."""
    return str(getattr(seg, "name", "")).startswith("ridge:")


def map_agreement(a: np.ndarray, b: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """Per image, the Dice between two (N, H, W) boolean vessel maps over the FOV's pixels
    (1.0 where both are empty there)."""
    a, b, fov = np.asarray(a, bool), np.asarray(b, bool), np.asarray(fov, bool)
    return np.array([dice(a[i][fov[i]], b[i][fov[i]]) for i in range(a.shape[0])], dtype=np.float64)


def judge_chunk(seg, x, fov: np.ndarray, maps: np.ndarray, labelled: np.ndarray) -> dict:
    """The judge's part of one reference chunk (evaluate/run.py `reference_chunk`): per image the
    agreement of its map with the ridge map (None for a ridge judge), and the judge's and the ridge
    filter's probabilities of the images with a manual mask (`labelled`, bool (N,)), for the
    pooled scores the driver computes (`judge_record`).

    Args:
        seg: the loaded judge.
        x: the chunk's originals, float (N, 3, H, W) in [0, 1].
        fov: bool (N, H, W).
        maps: the judge's maps of the originals as evaluation drew them (`vessel_maps`).
        labelled: which images have a manual vessel mask.
    """
    import torch

    from ablate.evaluate.reconstruct import vessel_maps
    from ablate.segmenter.unet_file import load_segmenter

    labelled = np.array(labelled, dtype=bool)  # a copy: object-store arrays are read-only, torch warns on them
    ridge = load_segmenter(RIDGE_SPEC)
    out: dict = {"agreement": None, "prob": None, "ridge_prob": None}
    if not is_ridge(seg):
        out["agreement"] = map_agreement(maps, vessel_maps(ridge, x, fov), fov).tolist()
    if labelled.any():
        f, pick = torch.tensor(np.array(fov[labelled], dtype=bool)), torch.from_numpy(labelled)
        out["prob"] = seg.predict(x[pick], f).cpu().numpy()
        out["ridge_prob"] = ridge.predict(x[pick], f).cpu().numpy()
    return out


def scores(prob: np.ndarray, vessel: np.ndarray, fov: np.ndarray, threshold: float) -> dict:
    """segmenter/scores.py's `evaluate_arrays`, with AUC None where the masks hold no vessel (or
    nothing but vessel) inside the FOV: an evaluation is not stopped by a dataset's odd masks."""
    try:
        return evaluate_arrays(prob, vessel, fov, threshold)
    except ValueError:  # roc_auc: both classes needed
        pred = np.asarray(prob) > threshold
        per_image = [dice(pred[i][fov[i]], vessel[i][fov[i]]) for i in range(pred.shape[0])]
        return {"dice": dice(pred[fov], vessel[fov]), "auc": None, "dice_mean_per_image": float(np.mean(per_image))}


def judge_record(seg, size: int, chunks: list[dict], vessel: np.ndarray, fov: np.ndarray,
                 labelled: np.ndarray) -> dict:
    """The judge's reliability on one image size's originals, as eval/notes.json keeps it
    (ablate.schemas.JudgeReliability): the chunks' parts (`judge_chunk`, in image order) pooled.

    Args:
        seg: the judge (its name and threshold).
        size: the image side, px.
        chunks: judge_chunk's outputs, chunk by chunk.
        vessel, fov: the manual masks (anything where `labelled` is False) and FOVs, bool (N, H, W).
        labelled: bool (N,), which images have a manual mask.
    """
    from ablate.segmenter.ridge import RidgeSegmenter

    labelled = np.asarray(labelled, bool)
    rec: dict = {"segmenter": seg.name, "image_size": int(size), "images": int(labelled.size),
                 "masks": int(labelled.sum())}
    if is_ridge(seg):
        rec["ridge_agreement_skipped"] = f"the judge is {seg.name}, a ridge filter itself"
    else:
        agreement = np.concatenate([c["agreement"] for c in chunks])
        rec["ridge_agreement"] = float(agreement.mean())
        rec["ridge_agreement_min"] = float(agreement.min())
    if labelled.any():
        prob = np.concatenate([c["prob"] for c in chunks if c["prob"] is not None])
        ridge_prob = np.concatenate([c["ridge_prob"] for c in chunks if c["ridge_prob"] is not None])
        mine = scores(prob, vessel[labelled], fov[labelled], seg.threshold)
        theirs = scores(ridge_prob, vessel[labelled], fov[labelled], RidgeSegmenter.threshold)
        rec.update({"dice": mine["dice"], "auc": mine["auc"], "dice_mean_per_image": mine["dice_mean_per_image"],
                    "ridge_dice": theirs["dice"]})
    return rec


def judge_summary(rec: dict) -> str:
    """One record in a log line (the report words it: report/judge_line.py)."""
    masks = (f"Dice {rec['dice']:.3f} / AUC {'n/a' if rec.get('auc') is None else format(rec['auc'], '.3f')} against "
             f"{rec['masks']} manual masks (ridge filter: Dice {rec['ridge_dice']:.3f})" if rec.get("masks")
             else "no manual masks")
    agree = (f"agrees with the ridge map at Dice {rec['ridge_agreement']:.3f} (mean of {rec['images']} images)"
             if rec.get("ridge_agreement") is not None else f"agreement with the ridge map not measured: "
             f"{rec.get('ridge_agreement_skipped', '')}")
    return f"{rec['segmenter']}: {masks}; {agree}"
