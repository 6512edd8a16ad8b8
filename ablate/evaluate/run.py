"""Evaluate every finished trial of an experiment on the held-out test split.

Ray tasks do the work, so it spreads over a cluster like training:
- once per chunk of test images: the vessel map of each original (the reference),
  and the originals' Inception / foundation-model features;
- per trial and chunk, in two tasks (evaluate/trial_stages.py: a device stage, on the GPU
  with --gpus-per-task, feeding a CPU-only morphology stage that overlaps the next chunk's
  device work): reconstruct from the trial's final checkpoint, fidelity
  (PSNR, SSIM, MS-SSIM inside the FOV, the whole-image values as `<name>_whole`;
  LPIPS where its weights are present), the vessel-border contrast and width errors on
  the green channel at the original's vessel borders (evaluate/vessel_border.py), the vessel map of the
  reconstruction, its morphology and its agreement with the original's map, and
  the reconstructions' features.
The driver turns features into FID / KID (and the Fréchet distance in the domain
foundation model's features) per trial. Outputs, in the experiment folder:
  eval/per_image.parquet  one row per (trial, test image), every metric
  results.parquet/.csv    each trial's means merged in as `test/<metric>` columns
  eval/notes.json         which segmenter and feature networks were used, what was skipped
                          (a metric the test split has too few images for: evaluate/set_metrics.py),
                          and the segmenter measured on the originals (`judge`: evaluate/judge_reliability.py)
  eval/samples.parquet, eval/sample_neighbours.parquet
                          the samples of trials with a prior, judged (evaluate/synthesis_tasks.py)
On another dataset (--data): eval/datasets/<name>-<manifest sha256[:12]>/ instead, with
set_metrics.parquet; results.parquet is left as it is. Every input is checked before Ray
starts (evaluate/arguments.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ablate import storage
from ablate.evaluate.judge_reliability import judge_record, judge_summary
from ablate.evaluate.reconstruct import reference_levels, to_tensor, vessel_maps
from ablate.evaluate.splits import load_test_split
from ablate.evaluate.synthesis_tasks import judge_group, trials_with_samples, write_tables
from ablate.evaluate.trial_stages import bring_weights, device_stage, fm_extractor, morphology_stage
from ablate.experiment_layout import ExperimentLayout
from ablate.schemas import JudgeReliability, Notes
from ablate.ui.progress import Progress

logger = logging.getLogger(__name__)

CHUNK = 8  # test images per Ray task


@dataclass(frozen=True)
class EvalOptions:
    exp: str
    data: str | None = None  # default: the dataset the grid was launched on
    segmenter: str | None = None  # a U-Net file, or "ridge"; default: the trained U-Net if present
    batch_size: int = 8
    gpus_per_task: float = 0.0
    morphology: str = "ablate"  # vessel-feature definitions: "ablate" or "automorph" (evaluate/automorph.py)
    split: str = "test"  # "test", or "all" (every split; only for another dataset than the grid's)


# ---------------------------------------------------------------- Ray tasks


def reference_chunk(images: np.ndarray, fov: np.ndarray, segmenter: str, nets: dict, morphology: str = "ablate",
                    shipped: dict | None = None, labelled: np.ndarray | None = None) -> dict:
    """Vessel maps of the originals (the reference), their morphology, their features, and the
    judge measured on them (evaluate/judge_reliability.py; `labelled`: which have a manual mask)."""
    import torch

    from ablate.backbones.inception import FIDInception
    from ablate.evaluate.automorph import features_for
    from ablate.evaluate.judge_reliability import judge_chunk
    from ablate.segmenter.unet_file import load_segmenter

    vessel_features = features_for(morphology)[0]
    torch.set_num_threads(1)
    bring_weights(shipped or {})
    x = to_tensor(images)
    seg = load_segmenter(segmenter)
    levels = reference_levels(seg, x, fov)  # the reconstructions are cut at these levels too
    maps = vessel_maps(seg, x, fov, levels)
    out = {"maps": maps, "levels": levels, "features": [vessel_features(m, v) for m, v in zip(maps, fov)],
           "segmenter": seg.name,
           "judge": judge_chunk(seg, x, fov, maps, np.zeros(len(x), bool) if labelled is None else labelled)}
    if nets.get("inception", True):  # absent: a caller from before it could be missing
        out["inception"] = FIDInception()(x).numpy()
    if "fm" in nets:
        out["fm"] = fm_extractor(nets["fm"])(x).numpy()
    return out


# ---------------------------------------------------------------- driver




def evaluate_experiment(opts: EvalOptions, setup=None) -> pd.DataFrame:
    """Evaluate with Ray running (or joined: a local Ray starts on the first task). `setup`:
    what evaluate/arguments.py's check_evaluation(opts) found, when the caller checked the
    arguments before starting Ray (`ablate evaluate`); else they are checked here."""
    import ray

    from ablate.evaluate.arguments import check_evaluation
    from ablate.evaluate.fidelity import MS_SSIM_MIN_SIDE
    from ablate.evaluate.set_metrics import set_metrics
    from ablate.train.results import write_results

    s = setup if setup is not None else check_evaluation(opts)
    exp, results, data_dir, cross, splits, shipped = s.exp, s.results, s.data_dir, s.cross, s.splits, s.shipped
    seg_spec, seg_note, nets, judge, notes = s.seg_spec, s.seg_note, s.nets, s.judge, list(s.notes)
    done, checkpoints = s.trials, s.checkpoints
    assert done is not None  # check_evaluation sets the trials to evaluate
    from ablate.segmenter.leakage import check_not_trained_on, unchecked_reason

    if unchecked_reason(judge):
        notes.append(unchecked_reason(judge))
    logger.info(seg_note)
    for n in notes + s.resampled:
        logger.info(n)

    def note(text: str) -> None:  # said once, however many trials it concerns
        if text not in notes:
            notes.append(text)
            logger.info(text)

    from ablate.evaluate.plan import judge_scale_caution

    per_image, means, cautions, judged, judged_on = [], {}, [], [], []
    for size, group in done.groupby("config.data.size"):
        caution = judge_scale_caution(judge, int(size))
        if caution:
            logger.info(f"caution: {caution}")
            cautions.append(caution)
        if int(size) < MS_SSIM_MIN_SIDE:
            note(f"MS-SSIM not computable at {int(size)} px: it needs images of at least {MS_SSIM_MIN_SIDE} px "
                 "a side (its fifth scale's 11 px window); PSNR and SSIM only")
        test = load_test_split(data_dir, int(size), splits)
        check_not_trained_on(judge, test["ids"], test["sources"], f"{data_dir} (test split)")
        chunks = [slice(k, k + CHUNK) for k in range(0, len(test["ids"]), CHUNK)]
        task = ray.remote(num_cpus=1, num_gpus=opts.gpus_per_task)
        imgs = [ray.put(test["images"][c]) for c in chunks]
        fovs = [ray.put(test["fov"][c]) for c in chunks]
        refs = ray.get([task(reference_chunk).remote(i, f, seg_spec, nets, opts.morphology, shipped,
                                                     test["labelled"][c])
                        for i, f, c in zip(imgs, fovs, chunks)])
        record = judge_record(judge, int(size), [r["judge"] for r in refs], test["vessel"], test["fov"],
                              test["labelled"])
        logger.info(f"vessel judge on the originals at {int(size)} px: {judge_summary(record)}")
        judged_on.append(JudgeReliability(**record))
        ref_maps = [ray.put(r["maps"]) for r in refs]
        real_inc = np.concatenate([r["inception"] for r in refs]) if "inception" in refs[0] else None
        real_fm = np.concatenate([r["fm"] for r in refs]) if "fm" in nets else None
        # Two tasks per (trial, chunk): the device stage (GPU with --gpus-per-task) hands its
        # maps to a CPU-only morphology stage, which Ray starts as soon as they exist, so the
        # GPU goes on to the next chunk while the CPUs skeletonise (evaluate/trial_stages.py).
        on_cpu = ray.remote(num_cpus=1, num_gpus=0)(morphology_stage)
        futures = {row.trial: [on_cpu.remote(task(device_stage).remote(row.checkpoint, i, f, seg_spec, nets,
                                                                          opts.batch_size, opts.gpus_per_task > 0,
                                                                          r["levels"], shipped),
                                             f, m, opts.morphology)
                               for i, f, m, r in zip(imgs, fovs, ref_maps, refs)] for row in group.itertuples()}
        with Progress("evaluate", len(group) * len(test["ids"]), "trial images") as bar:
            for row in group.itertuples():
                # Chunk by chunk, so the bar moves while a trial is scored.
                outs = [bar.passing(ray.get(f), len(test["ids"][c])) for f, c in zip(futures[row.trial], chunks)]
                k = 0
                for ref, out in zip(refs, outs):
                    for feats, metrics in zip(ref["features"], out["rows"]):
                        per_image.append({"trial": row.trial, "combination": row.combination, "seed": row.seed,
                                          "image_id": test["ids"][k], "segmenter": ref["segmenter"],
                                          **{f"orig.{n}": v for n, v in feats.items()}, **metrics})
                        k += 1
                fake_fm = np.concatenate([o["fm"] for o in outs]) if real_fm is not None else None
                fake_inc = np.concatenate([o["inception"] for o in outs]) if real_inc is not None else None
                means[row.trial], short = set_metrics(real_inc, fake_inc,
                                                      real_fm, fake_fm, nets.get("fm"))
                for text in short:
                    note(text)
        if not cross:  # samples: against the train split the trials trained on, so the grid's own data only
            judged_here = judge_group(exp, group, test, refs, data_dir, seg_spec, nets, opts.gpus_per_task,
                                      opts.morphology, shipped)
            for text in (t for j in judged_here for t in j.notes):
                note(text)
            judged += judged_here
        elif not trials_with_samples(exp, group).empty:
            logger.info(f"samples are judged on the grid's own test split only, not on {data_dir}")
    table = pd.DataFrame(per_image)
    metric_cols = [c for c in table.columns if c not in ("trial", "combination", "seed", "image_id", "segmenter")]
    trial_means = table.groupby("trial")[metric_cols].mean()
    if cross:  # its own folder; the experiment's own evaluation and results stay as they are
        where = ExperimentLayout(exp).dataset_eval(cross)
        sets = pd.DataFrame(means).T
        storage.write_parquet(table, where.per_image)
        storage.write_parquet(sets.rename_axis("trial").reset_index(), where.set_metrics)
        storage.write_text(where.notes, Notes(
            **s.dataset, splits=list(splits), segmenter=seg_note, morphology=opts.morphology, skipped=notes,
            cautions=cautions, resampled=s.resampled, feature_nets=nets, images=int(table["image_id"].nunique()),
            judge=judged_on, **checkpoints).to_json())
        logger.info(f"evaluated on {data_dir} ({'+'.join(splits)}): {where.folder}")
        return trial_means.join(sets)
    own = ExperimentLayout(exp).eval
    storage.write_parquet(table, own.per_image)
    write_tables(exp, judged)
    storage.write_text(own.notes, Notes(
        segmenter=seg_note, morphology=opts.morphology, skipped=notes, cautions=cautions, resampled=s.resampled,
        feature_nets=nets, test_images=int(table["image_id"].nunique()), judge=judged_on, **checkpoints).to_json())
    merged = results.drop(columns=[c for c in results.columns if c.startswith("test/") or c == "segmenter"])
    extra = pd.DataFrame({t: {**{f"test/{c}": trial_means.loc[t, c] for c in metric_cols}, **means[t]}
                          for t in trial_means.index}).T
    extra["segmenter"] = table.groupby("trial")["segmenter"].first()
    merged = merged.merge(extra, left_on="trial", right_index=True, how="left")
    write_results(merged, exp)
    return merged
