"""`ablate evaluate`'s judging of samples (evaluate/synthesis.py) over an experiment: per image
size, the train split's Inception features once (Ray tasks over chunks), then one Ray task per
trial whose samples folder holds chunks; and the two tables it writes,

  eval/samples.parquet            one row per trial with samples (synthesis.COLUMNS)
  eval/sample_neighbours.parquet  each trial's 8 closest sample-train pairs per space

both written atomically, and neither when no trial has samples. Samples are judged on the grid's
own dataset only: the train split that memorisation searches is the one the trial trained on.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ablate import storage
from ablate.data.sample_store import chunk_numbers
from ablate.evaluate.splits import load_test_split
from ablate.evaluate.synthesis import (
    COLUMNS,
    NEIGHBOUR_COLUMNS,
    Judgement,
    inception_features,
    judge_trial,
    real_images,
)
from ablate.experiment_layout import ExperimentLayout

logger = logging.getLogger(__name__)

TRAIN_CHUNK = 8  # train images per Inception task (evaluation's test chunks are as large)


def trials_with_samples(exp, group: pd.DataFrame) -> pd.DataFrame:
    """The rows of `group` (results.parquet's) whose samples folder holds at least one chunk."""
    layout = ExperimentLayout(exp)
    return group[[bool(chunk_numbers(layout.trial_samples(t))) for t in group["trial"]]]


def judge_group(exp, group: pd.DataFrame, test: dict, refs: list[dict], data_dir: str, seg_spec: str, nets: dict,
                gpus_per_task: float, morphology: str, shipped: dict | None) -> list[Judgement]:
    """Judge the samples of every trial of one image-size group that has them ([] when none has).

    Args:
        exp: the experiment folder.
        group: results.parquet's rows of the finished trials at this size.
        test: the test split at this size (evaluate/run.load_test_split).
        refs: evaluate/run.reference_chunk's outputs over the test split, in order.
        data_dir: the grid's prepared dataset.
        seg_spec: the segmenter spec evaluation uses.
        nets: the feature networks present.
        gpus_per_task: GPUs per Ray task (evaluation's --gpus-per-task).
        morphology: the vessel-feature definitions ("ablate" or "automorph").
        shipped: pretrained files for tasks on other nodes.
    """
    import ray

    rows = trials_with_samples(exp, group)
    if rows.empty:
        return []
    size = int(test["images"].shape[1])
    train = load_test_split(data_dir, size, ("train",))
    task = ray.remote(num_cpus=1, num_gpus=gpus_per_task)
    use_gpu = gpus_per_task > 0
    train_inc = None
    if "inception" in refs[0]:
        chunks = [train["images"][k:k + TRAIN_CHUNK] for k in range(0, len(train["ids"]), TRAIN_CHUNK)]
        train_inc = np.concatenate(ray.get([task(inception_features).remote(c, use_gpu, shipped) for c in chunks]))
    real = ray.put(real_images(test, refs, train, train_inc))
    layout = ExperimentLayout(exp)
    futures = [task(judge_trial).remote({"trial": r.trial, "combination": r.combination, "seed": r.seed},
                                        layout.trial_samples(r.trial), real, seg_spec, nets, morphology,
                                        use_gpu, shipped)
               for r in rows.itertuples()]
    judged = []
    for f in futures:
        j = ray.get(f)
        logger.info(summary(j.row))
        judged.append(j)
    return judged


def summary(row: dict) -> str:
    """One log line of a trial's judged samples."""
    said = lambda flag: "not computed" if flag is None else "yes" if flag else "no"
    return (f"samples of {row['trial']}: n = {row['n_samples']}, FID {row['fid']:.2f} (against {row['n_real']} "
            f"test images), precision {row['precision']:.2f} / recall {row['recall']:.2f}, memorising: "
            f"{said(row['mem_flag'])} in features, {said(row['mem_flag_px'])} in pixels")


def write_tables(exp, judged: list[Judgement]) -> None:
    """eval/samples.parquet, eval/sample_neighbours.parquet (atomic) and each trial's
    eval/sample_vessels/<trial>.png; nothing when `judged` is empty."""
    if not judged:
        return
    table = pd.DataFrame([j.row for j in judged], columns=list(COLUMNS))
    for c in ("mem_flag", "mem_flag_px"):
        table[c] = table[c].astype("boolean")  # NA where not computed (no Inception features)
    neighbours = pd.DataFrame([n for j in judged for n in j.neighbours], columns=list(NEIGHBOUR_COLUMNS))
    own = ExperimentLayout(exp).eval
    for j in judged:  # before the table that names the trials: a report never finds a row without its picture
        if j.vessel_sheet:
            storage.write_bytes(own.sample_vessels(j.row["trial"]), j.vessel_sheet)
    storage.write_parquet(table, own.samples)
    storage.write_parquet(neighbours, own.sample_neighbours)
    logger.info(f"samples of {len(table)} trial(s) judged: {own.samples}")
