"""Read an experiment folder into tidy tables for the report.

Inputs, in the experiment folder EXP (what `ablate launch` and `ablate evaluate` write):
  EXP/results.parquet         one row per trial (required; launch writes it when the grid ends)
  EXP/grid.json               resolved trials in grid order, and the dataset path (optional)
  EXP/eval/per_image.parquet  one row per (trial, test image) (optional: without it the report
                              shows training / validation metrics and says evaluation is missing)
  EXP/eval/notes.json         segmenter used, skipped metrics, feature networks (optional)
  EXP/eval/samples.parquet, sample_neighbours.parquet  the prior's samples judged, per trial (optional:
                              without them no Synthesis section; columns: ablate.report.sample_columns)

Tables (pandas DataFrames, plain column types; `write_tables` stores them as
EXP/report/<name>.parquet, and they read back with `pandas.read_parquet` or
`pyarrow.parquet.read_table` with nothing from this package):

``trials`` - one row per trial: results.parquet as written, plus
    order        int, position of the trial's combination in the grid (0 = first)
    loss_terms   str, the trial's loss terms with weights, e.g. "codebook x1, l1 x1, lpips[random-vgg] x0.5"
    stand_ins    str, "; "-joined stand-in notes for this trial ("" when none)

``trial_metrics`` - long, one row per (finished trial, metric); the numbers the per-seed summaries
use (trials whose status is not "done" are left out, and listed in the report's warnings):
    trial, combination (str), seed (int), metric (str), value (float),
    source  "val"  final validation value from results.parquet (metric named val/<...>),
            "test" mean over test images of a per-image metric (from per_image.parquet;
                   abs_delta_<f> is the mean of |delta_<f>|, not |mean delta_<f>|),
            "test-set" a whole-test-set number from results.parquet: fid, kid, fd_<model>, kid_<model>,
                   named with the number of test images n it was computed on: fid@20, kid@20,
                   fd_retfound@20 (ablate.report.metric_names: their value depends on n); a
                   KID's spread over subsets, where evaluation recorded one (test/kid_std),
                   is the metric subset_sd:kid@20 (no better direction)

``image_metrics`` - long, one row per (trial, test image, per-image metric):
    trial, combination (str), seed (int), image_id (str), metric (str), value (float; NaN where
    the metric is undefined, e.g. a width on an empty vessel map)

Per-image metrics (ids as in the tables): psnr, ssim, [ms_ssim] (inside the FOV), psnr_whole,
ssim_whole, [ms_ssim_whole] (the whole square), [lpips | lpips[random-vgg]],
dice, cldice, betti0_error, betti1_error, and abs_delta_<f> = |f(reconstruction's vessel map)
- f(original's map)| for every vessel feature f of ablate.evaluate.morphology (density,
fractal_dimension, average_width, average_width_area, distance_tortuosity,
squared_curvature_tortuosity, tortuosity_density, skeleton_length, branch_points, end_points,
components, holes, segments): the target is the original's value, so smaller is better.
The raw orig.<f> / recon.<f> columns stay in per_image.parquet; they have no better direction.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ablate.data.dataset import MANIFEST
from ablate.errors import AblateError
from ablate.experiment_layout import ExperimentLayout
from ablate.io import atomic_path
from ablate.report.metric_names import labelled
from ablate.report.text import plain
from ablate.schemas import GridRecord, Notes, problem

logger = logging.getLogger(__name__)


# What a report without eval/notes.json cannot say (its warning names it).
NOTES_LOST = ("which segmenter, morphology definitions and feature networks evaluation used, and what it skipped, "
              "are not shown; `ablate evaluate` rewrites the file")
TRIAL_LEVEL_TEST = ("fid", "kid")  # plus fd_<model>, kid_<model>: one number per trial, no per-image values
ID_COLUMNS = ("trial", "combination", "seed", "image_id", "segmenter")


class ReportError(AblateError, FileNotFoundError):
    """Something the report needs is missing; the message names the file and what to run."""


@dataclass
class Experiment:
    exp: Path
    trials: pd.DataFrame
    trial_metrics: pd.DataFrame
    image_metrics: pd.DataFrame | None
    combinations: list[str]  # grid order
    baseline: str
    baseline_reason: str
    grid: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    data: str | None = None
    segmenter: str | None = None  # the segmenter's name as evaluation recorded it (e.g. ridge:meijering+otsu)
    warnings: list[str] = field(default_factory=list)
    eval_missing: str | None = None  # why there are no test metrics, or None
    location: str = ""  # where the experiment lives (its URI when `exp` is a local staging copy)
    samples: pd.DataFrame | None = None  # eval/samples.parquet (finished trials only); None: no samples judged
    sample_neighbours: pd.DataFrame | None = None  # eval/sample_neighbours.parquet; None: absent

    @property
    def evaluated(self) -> bool:
        return self.image_metrics is not None and not self.image_metrics.empty

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.trials["seed"].dropna().unique())


# ---------------------------------------------------------------- reading


def _read_parquet(path: Path, what: str, shown: str | None = None) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - the message names the file
        raise ReportError(f"{shown or path}: unreadable {what} ({type(e).__name__}: {e})") from None


def read_optional_json(path: Path, shape, shown: str, without: str) -> tuple[dict, str | None]:
    """(the file's object, None), or ({}, a warning) for a file the report can do without (grid.json,
    eval/notes.json) that is unreadable or not of `shape` (ablate.schemas): the report goes on
    without it rather than stopping on a file that only adds context, and says so in the report
    and on the console, naming the file, the key and what is missing from the report (`without`)."""
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        why = f"unreadable ({e})"
    else:
        wrong = problem(value, shape)
        if wrong is None:
            return value, None
        why = wrong
    warning = f"{shown}: {why}; left out, so {without}"
    logger.warning(f"warning: {warning}")
    return {}, warning


def load_experiment(exp: str | Path, location: str | None = None) -> Experiment:
    """`location`: the experiment's URI when `exp` is a local copy staged from object
    storage (ablate.report.staged); messages then name the files where they really are."""
    exp = Path(exp).expanduser().resolve()
    where = location or str(exp)

    def shown(p: Path) -> str:
        return str(p) if location is None else f"{location}/{p.relative_to(exp).as_posix()}"

    if not exp.is_dir():
        raise ReportError(f"{where}: no such experiment folder")
    layout = ExperimentLayout(exp)
    results_path, grid_path = Path(layout.results), Path(layout.grid)
    notes_path, per_image_path = Path(layout.eval.notes), Path(layout.eval.per_image)
    if not results_path.is_file():
        raise ReportError(f"{shown(results_path)}: not found; is {where} an experiment folder from `ablate launch`? "
                          "(launch writes it when the grid ends)")
    trials = _read_parquet(results_path, "results table", shown(results_path))
    missing = [c for c in ("trial", "combination", "seed", "status") if c not in trials.columns]
    if missing:
        raise ReportError(f"{shown(results_path)}: columns {missing} missing; not a results table from `ablate launch`")
    warnings: list[str] = []
    grid: dict = {}
    if grid_path.is_file():
        grid, bad = read_optional_json(grid_path, GridRecord, shown(grid_path),
                                       "the combination order is taken from results.parquet and the dataset is unknown")
        warnings.extend([bad] if bad else [])
    else:
        warnings.append(f"{shown(grid_path)}: not found; combination order taken from results.parquet")

    combinations = _grid_order(grid, trials)
    baseline, reason = choose_baseline(combinations)
    order = {c: i for i, c in enumerate(combinations)}
    trials = trials.copy()
    trials["order"] = trials["combination"].map(order).astype(int)
    trials["loss_terms"] = [", ".join(f"{t} x{w:g}" for t, w in loss_terms(r).items()) for r in trials.to_dict("records")]
    trials["stand_ins"] = ["; ".join(stand_in_notes(r)) for r in trials.to_dict("records")]
    trials = trials.sort_values(["order", "seed"]).reset_index(drop=True)

    notes: dict = {}
    if notes_path.is_file():
        notes, bad = read_optional_json(notes_path, Notes, shown(notes_path), NOTES_LOST)
        warnings.extend([bad] if bad else [])

    image_metrics, eval_missing, segmenter = None, None, None
    if per_image_path.is_file():
        per_image = _read_parquet(per_image_path, "per-image table", shown(per_image_path))
        image_metrics = tidy_per_image(per_image)
        if "segmenter" in per_image.columns and len(per_image):
            segmenter = str(per_image["segmenter"].iloc[0])
        evaluated = set(per_image["trial"].unique())
        done = trials.loc[trials["status"] == "done", "trial"]
        unevaluated = sorted(set(done) - evaluated)
        if unevaluated:
            warnings.append(f"{len(unevaluated)} finished trial(s) not in {shown(per_image_path)} "
                            f"({', '.join(unevaluated)}): run `ablate evaluate {where}` again")
    else:
        eval_missing = (f"{shown(per_image_path)}: not found; run `ablate evaluate {where}` first. This report shows "
                        "training and validation metrics only.")
    not_done = trials[trials["status"] != "done"]
    for r in not_done.to_dict("records"):
        error = r.get("error")
        warnings.append(f"trial {r['trial']} is {r['status']}"
                        + (f": {plain(error, _error_log(r.get('trial_dir')))}" if isinstance(error, str) and error else ""))
    trial_metrics = tidy_trial_metrics(trials, image_metrics)
    samples, neighbours = read_sample_tables(layout, trials, shown, where, warnings)
    return Experiment(exp=exp, trials=trials, trial_metrics=trial_metrics, image_metrics=image_metrics,
                      combinations=combinations, baseline=baseline, baseline_reason=reason, grid=grid, notes=notes,
                      data=grid.get("data"), segmenter=segmenter, warnings=warnings, eval_missing=eval_missing,
                      location=where, samples=samples, sample_neighbours=neighbours)


def read_sample_tables(layout: ExperimentLayout, trials: pd.DataFrame, shown, where: str,
                       warnings: list[str]) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """eval/samples.parquet (finished trials' rows, grid order) and eval/sample_neighbours.parquet, None
    where absent. Warns where trials drew samples (results' prior.* columns) that no table judges; a
    table without a column the report reads is an error naming them (ablate.report.sample_columns)."""
    from ablate.report.sample_columns import NEIGHBOUR_COLUMNS, REQUIRED

    path, npath = Path(layout.eval.samples), Path(layout.eval.sample_neighbours)
    drew = set(trials.loc[(trials["status"] == "done") & (pd.to_numeric(trials["prior.samples"]) > 0), "trial"]
               if "prior.samples" in trials.columns else [])
    tables: list[pd.DataFrame | None] = []
    for p, what, needed in ((path, "sample table", REQUIRED), (npath, "sample-neighbour table", NEIGHBOUR_COLUMNS)):
        t = _read_parquet(p, what, shown(p)) if p.is_file() else None
        missing = [] if t is None else [c for c in needed if c not in t.columns]
        if missing:
            raise ReportError(f"{shown(p)}: columns {missing} missing; run `ablate evaluate {where}` again")
        tables.append(t)
    table, neighbours = tables
    if table is None:
        if drew:
            warnings.append(f"{shown(path)}: not found although trials drew samples; run `ablate evaluate {where}` "
                            "to judge them (no Synthesis section until then)")
        return None, None
    unknown = sorted(set(table["trial"]) - set(trials["trial"]))
    if unknown:
        warnings.append(f"{shown(path)}: trial(s) {', '.join(map(str, unknown))} not in results.parquet; left out")
    done = trials.loc[trials["status"] == "done", ["trial", "order"]]
    table = table.merge(done, on="trial").sort_values(["order", "seed"]).drop(columns="order").reset_index(drop=True)
    table["seed"] = table["seed"].astype(int)
    if unjudged := sorted(drew - set(table["trial"])):
        warnings.append(f"{len(unjudged)} trial(s) with samples not in {shown(path)} ({', '.join(unjudged)}): "
                        f"run `ablate evaluate {where}` again")
    return table, neighbours


def _error_log(trial_dir) -> str | None:
    """The trial's full traceback, where Tune wrote one (its error column is cut to a line in the report)."""
    if not isinstance(trial_dir, str) or not trial_dir:
        return None
    log = Path(trial_dir) / "error.txt"
    return str(log) if log.is_file() else None


def _grid_order(grid: dict, trials: pd.DataFrame) -> list[str]:
    seen: list[str] = []
    for spec in (grid.get("trials") or {}).values():
        c = spec.get("combination")
        if c is not None and c not in seen:
            seen.append(c)
    for c in trials["combination"]:  # anything results has that grid.json does not
        if c not in seen:
            seen.append(c)
    return [c for c in seen if c in set(trials["combination"])]


def choose_baseline(combinations: list[str]) -> tuple[str, str]:
    """`base` when the grid has it, else the grid's first combination; with the reason."""
    if not combinations:
        raise ReportError("the experiment has no trials")
    if "base" in combinations:
        return "base", "the combination named `base`"
    return combinations[0], f"no combination is named `base`, so the grid's first combination `{combinations[0]}`"


# ---------------------------------------------------------------- tidy tables


def _num(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def per_image_metric_columns(per_image: pd.DataFrame) -> list[str]:
    """The per-image columns with a better direction (raw orig./recon. features are left out)."""
    cols = []
    for c in per_image.columns:
        if c in ID_COLUMNS or c.startswith(("orig.", "recon.")):
            continue
        cols.append(c)
    return cols


def tidy_per_image(per_image: pd.DataFrame) -> pd.DataFrame:
    cols = per_image_metric_columns(per_image)
    wide = per_image[["trial", "combination", "seed", "image_id"] + cols].copy()
    for c in cols:
        if c.startswith("delta_"):
            wide[c] = wide[c].astype(float).abs()
    wide = wide.rename(columns={c: "abs_" + c for c in cols if c.startswith("delta_")})
    long = wide.melt(id_vars=["trial", "combination", "seed", "image_id"], var_name="metric", value_name="value")
    long["value"] = long["value"].astype(float)
    long["seed"] = long["seed"].astype(int)
    long["image_id"] = long["image_id"].astype(str)
    return long.reset_index(drop=True)


def test_set_name(column: str, n: int | None) -> str | None:
    """The trial_metrics name of a results column test/<name> holding a whole-test-set number
    (None for any other column): fid -> fid@n, kid_std -> subset_sd:kid@n; without a known n
    the plain name, which the report then keeps out of verdicts (ablate.report.metric_names)."""
    name = column[len("test/"):]
    spread = name.endswith("_std") and (name == "kid_std" or name.startswith("kid_"))
    stem = name[:-len("_std")] if spread else name
    if not (stem in TRIAL_LEVEL_TEST or stem.startswith(("fd_", "kid_"))):
        return None
    label = labelled(stem, n) if n else stem
    return f"subset_sd:{label}" if spread else label


def tidy_trial_metrics(trials: pd.DataFrame, image_metrics: pd.DataFrame | None) -> pd.DataFrame:
    rows = []
    n_images = ({} if image_metrics is None or image_metrics.empty
                else image_metrics.groupby("trial")["image_id"].nunique().to_dict())
    for r in trials[trials["status"] == "done"].to_dict("records"):
        for k, v in r.items():
            if isinstance(k, str) and k.startswith("val/") and np.isfinite(_num(v)):
                rows.append({"trial": r["trial"], "combination": r["combination"], "seed": int(r["seed"]),
                             "metric": k, "value": _num(v), "source": "val"})
            elif isinstance(k, str) and k.startswith("test/"):
                name = test_set_name(k, n_images.get(r["trial"]))
                if name is not None and np.isfinite(_num(v)):
                    rows.append({"trial": r["trial"], "combination": r["combination"], "seed": int(r["seed"]),
                                 "metric": name, "value": _num(v), "source": "test-set"})
    out = pd.DataFrame(rows, columns=["trial", "combination", "seed", "metric", "value", "source"])
    if image_metrics is not None and not image_metrics.empty:
        means = (image_metrics.groupby(["trial", "combination", "seed", "metric"], sort=False)["value"]
                 .mean().reset_index())  # NaN images skipped, as evaluate's test/<metric> means
        means["source"] = "test"
        out = pd.concat([means, out], ignore_index=True)
    out["seed"] = out["seed"].astype(int)
    out["value"] = out["value"].astype(float)
    return out[["trial", "combination", "seed", "metric", "value", "source"]]


def write_tables(e: Experiment, out: Path) -> dict[str, Path]:
    tables = {"trials": e.trials, "trial_metrics": e.trial_metrics}
    if e.image_metrics is not None:
        tables["image_metrics"] = e.image_metrics
    paths = {}
    for name, df in tables.items():
        df = df.copy()
        for c in df.columns:  # mixed-type object columns (config values) -> strings, so pyarrow stores them
            if df[c].dtype == object and df[c].map(type).nunique() > 1:
                df[c] = df[c].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
        with atomic_path(out / f"{name}.parquet") as tmp:
            df.to_parquet(tmp, index=False)
        paths[name] = out / f"{name}.parquet"
    return paths


# ---------------------------------------------------------------- what each trial's losses were


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _is_false(v) -> bool:
    """An explicit false (bool, numpy bool or the string "False"); absent is not false."""
    if not _present(v):
        return False
    if isinstance(v, str):
        return v.strip().lower() in ("false", "0", "no")
    return not bool(v)


def loss_terms(row: dict) -> dict[str, float]:
    """{term tag: weight} of one results row, tags as the trainer logs them (lpips[random-vgg], foundation[...])."""
    out = {}
    for k, v in row.items():
        if isinstance(k, str) and k.startswith("config.loss.") and k.endswith(".weight") and _present(v):
            name = k[len("config.loss."):-len(".weight")]
            out[term_tag(row, name)] = float(v)
    return dict(sorted(out.items()))


def term_tag(row: dict, name: str) -> str:
    opt = lambda o: row.get(f"config.loss.{name}.options.{o}")
    if name == "lpips":
        return "lpips[random-vgg]" if _is_false(opt("pretrained")) else "lpips"
    if name == "foundation":
        model = opt("model") if _present(opt("model")) else "retfound"
        return f"foundation[{model}|random]" if _is_false(opt("pretrained")) else f"foundation[{model}]"
    return name


def uses(row: dict, term: str) -> bool:
    w = row.get(f"config.loss.{term}.weight")
    return w is not None and _present(w) and float(w) > 0  # (`is not None` for the type checker)


def edge_setting(row: dict) -> str | None:
    """The edge channel the model reconstructs (family/options), or None for RGB only."""
    parts = sorted((k[len("config.model.edge_channel."):], v) for k, v in row.items()
                   if isinstance(k, str) and k.startswith("config.model.edge_channel.") and _present(v))
    return ", ".join(f"{k}={v}" for k, v in parts) or None


def stand_in_notes(row: dict) -> list[str]:
    """Notes for loss terms that ran with something other than the paper's pretrained network."""
    notes = []
    if uses(row, "lpips") and _is_false(row.get("config.loss.lpips.options.pretrained")):
        notes.append("lpips term with a RANDOM VGG16 trunk (stand-in, not ImageNet VGG16)")
    if uses(row, "foundation"):
        model = row.get("config.loss.foundation.options.model")
        model = model if _present(model) else "retfound"
        if _is_false(row.get("config.loss.foundation.options.pretrained")):
            notes.append(f"foundation term with a RANDOM {model} ViT (stand-in, not RETFound)")
        elif model == "fundus_mae":
            notes.append("foundation term with our own fundus MAE (`ablate fm pretrain`), not RETFound")
        elif model == "custom":
            notes.append(f"foundation term with a custom ViT ({row.get('config.loss.foundation.options.weights')}), "
                         "not RETFound")
    return notes


def is_demo_data(data: str | None) -> bool:
    """True for the built-in one-eye demo set (ablate.data.demo)."""
    if not data:
        return False
    from ablate.cache import cache_root

    p = Path(data)
    if p.parent.name == "demo" and p.name.startswith("prepared-"):
        return True
    try:
        if p.resolve().parent == (cache_root() / "demo").resolve():
            return True
        src = json.loads((p / MANIFEST).read_text()).get("source", "")
        return Path(src).name == "raw" and Path(src).parent.name == "demo"
    except (OSError, ValueError):
        return False
