"""Evaluations of the grid's trained trials on other prepared datasets, one report section each.

`ablate evaluate EXP --data OTHER` writes EXP/eval/datasets/<name>-<manifest sha256[:12]>/
(per_image.parquet, set_metrics.parquet, notes.json naming its path, hash and counts; folders
written before the hash was part of the name are read as well) and leaves the experiment's own
evaluation alone; the report shows each such folder in its own section, with the dataset's
path, never mixed into the grid's own tables or verdicts: per combination, the mean over its
seeds of each trial's mean over the images (and the number of seeds), for the metrics in SHOWN
that the folder has. The paper's questions are asked again on each folder (`questions_on`):
the same pairs, declared primaries and rules as the grid's own, on that dataset's per-image
numbers only, so a reader sees whether a verdict holds on another camera.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ablate.experiment_layout import ExperimentLayout
from ablate.report.collect import NOTES_LOST, Experiment, read_optional_json, tidy_per_image, tidy_trial_metrics
from ablate.report.questions import Answer, Declared, answer_q1, answer_q2
from ablate.schemas import Notes

SHOWN = ("psnr", "ssim", "ms_ssim", "border_width_error", "border_contrast_error", "cldice", "dice", "betti0_patch64_error",
         "delta_vessel_width", "test/fid", "test/kid")


@dataclass
class OtherData:
    name: str
    notes: dict
    table: pd.DataFrame  # combination, seeds, one column per metric (|delta| for delta_ columns)
    warning: str | None = None  # its notes.json, left out: unreadable or of the wrong shape
    per_image: pd.DataFrame | None = None  # its per_image.parquet as written, for the questions


def load_other_datasets(exp: Path, combinations: list[str]) -> list[OtherData]:
    out = []
    for folder in sorted(Path(ExperimentLayout(exp).datasets).glob("*/")):
        files = ExperimentLayout(exp).dataset_eval(folder.name)
        per_image = Path(files.per_image)
        if not per_image.is_file():
            continue
        pi = pd.read_parquet(per_image)
        raw = pi.copy()
        notes: dict = {}
        warning: str | None = None
        if Path(files.notes).is_file():
            notes, warning = read_optional_json(Path(files.notes), Notes, files.notes, NOTES_LOST)
        cols = [c for c in SHOWN if c in pi.columns]
        for c in cols:
            if c.startswith("delta_"):
                pi[c] = pi[c].abs()
        trial = pi.groupby(["combination", "trial"])[cols].mean()
        sets = Path(files.set_metrics)
        if sets.is_file():
            s = pd.read_parquet(sets).set_index("trial")
            extra = [c for c in SHOWN if c in s.columns]
            trial = trial.join(s[extra], on="trial")
        by = trial.groupby(level="combination")
        table = by.mean().round(4)
        table.insert(0, "seeds", by.size())
        table = table.rename(columns={c: "abs_" + c for c in table.columns if c.startswith("delta_")})
        order = [c for c in combinations if c in table.index] + [c for c in table.index if c not in combinations]
        out.append(OtherData(folder.name, notes, table.loc[order].reset_index(), warning, raw))
    return out


def describe(o: OtherData) -> str:
    n = o.notes.get("images", "?")
    splits = "+".join(o.notes.get("splits", [])) or "?"
    sha = o.notes.get("manifest_sha256")
    said = [*o.notes.get("skipped", []), *o.notes.get("resampled", [])]  # e.g. FID not computable at n = 3
    return (f"{n} images of {o.notes.get('data', o.name)} ({splits} split(s)"
            + (f"; manifest sha256 {sha[:12]}" if sha else "") + "), scored with the grid's trained trials; "
            f"{o.notes.get('segmenter', 'segmenter not recorded')}. Mean over each combination's seeds of the "
            "per-trial means; not part of the verdicts above." + "".join(f" {s.rstrip('.')}." for s in said)
            + (f" WARNING: {o.warning}." if o.warning else ""))


def on_other_data(e: Experiment, o: OtherData) -> Experiment:
    """The grid's trained trials as another dataset judged them: its per-image numbers, their
    per-trial means and its notes.json (the judge measured on its originals) in place of the grid's
    own test split's. The training run's val/ figures and the
    grid's own whole-test-set numbers (test/fid ...) are left out (they are of the grid's data), and
    so are the sample tables."""
    assert o.per_image is not None
    own = [c for c in e.trials.columns if isinstance(c, str) and c.startswith(("val/", "test/"))]
    trials = e.trials.drop(columns=own)
    images = tidy_per_image(o.per_image)
    segmenter = str(o.per_image["segmenter"].iloc[0]) if "segmenter" in o.per_image.columns and len(o.per_image) else None
    return dataclasses.replace(e, trials=trials, image_metrics=images, trial_metrics=tidy_trial_metrics(trials, images),
                               segmenter=segmenter, notes=o.notes, samples=None, sample_neighbours=None,
                               eval_missing=None)


def questions_on(e: Experiment, o: OtherData, declared: Declared) -> list[Answer]:
    """Q1 and Q2 asked of another dataset's evaluation with the grid's declared primaries (the
    grid's own Holm families and seed rules; each dataset its own families)."""
    if o.per_image is None or o.per_image.empty:
        return []
    other = on_other_data(e, o)
    return [answer_q1(other, declared), answer_q2(other, declared)]
