"""One row per trial: name, combination, seed, every config value, final metrics,
checkpoint path, wall time. Written as results.parquet and results.csv."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ablate import storage
from ablate.experiment_layout import ExperimentLayout
from ablate.runtime.config_errors import CONFIG_ERROR
from ablate.specs import TrialSpec

logger = logging.getLogger(__name__)

KEY_COLUMNS = ["trial", "trial_id", "combination", "seed", "status"]


def collect_results(result_grid, trials: dict[str, TrialSpec]) -> pd.DataFrame:
    rows = []
    for result in result_grid:
        key = result.config["trial"]
        spec = trials[key]
        m = dict(result.metrics or {})
        row = {
            "trial": f"{key}-{m.get('trial_id', '')}".rstrip("-"),
            "trial_id": m.get("trial_id"),
            "status": _status(result.error, m),
            "error": (f"{type(result.error).__name__}: {result.error}"[:2000] if result.error is not None
                      else (m.get(CONFIG_ERROR) or m.get("stop_reason") or None)),
            **{f"config.{k}": v for k, v in spec.flat().items() if k not in ("combination", "seed")},
            "combination": spec.combination,
            "seed": spec.seed,
            "steps": m.get("step"),
            "workers": m.get("world_size"),
            "resumed_from_step": m.get("resumed_from_step"),
            "checkpoint": m.get("checkpoint_path"),
            "wall_time_s": m.get("time_total_s"),
            "startup_s": m.get("time/startup_s"),
            "trial_dir": result.path,
        }
        row.update({k: v for k, v in m.items() if k.startswith(("val/", "train/", "data/", "node/", "time/", "prior."))})
        rows.append(row)
    df = pd.DataFrame(rows)
    front = [c for c in KEY_COLUMNS if c in df.columns]
    return df[front + [c for c in df.columns if c not in front]].sort_values(["combination", "seed"]).reset_index(drop=True)


def _status(error, metrics: dict) -> str:
    if error is not None or metrics.get(CONFIG_ERROR):  # a configuration error ends a trial without raising
        return "error"
    if metrics.get("stop_reason"):
        return "diverged"  # stopped on a non-finite loss; the reason is in `error`
    return "done" if metrics.get("final") else "incomplete"


def merge_results(previous: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """One row per (combination, seed): the new rows, plus earlier rows of trials this run did
    not touch (a `--only` run adds its combinations to an experiment; a resumed Tune run
    reports only the trials of its own launch)."""
    if previous is None or previous.empty:
        return new
    new = keep_finished(previous, new)
    mine = set(zip(new["combination"], new["seed"]))
    kept = previous[[(c, s) not in mine for c, s in zip(previous["combination"], previous["seed"])]]
    out = pd.concat([kept, new], ignore_index=True) if len(kept) else new
    return out.sort_values(["combination", "seed"]).reset_index(drop=True)


def _complete(row) -> bool:
    ckpt = row.get("checkpoint")
    return row.get("status") == "done" and isinstance(ckpt, str) and bool(ckpt)


def keep_finished(previous: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """`new` with every trial that `previous` holds finished with a checkpoint kept as it was
    wherever `new` has it unfinished or without a checkpoint (issue 20: a resumed run that
    re-reported a finished trial wrote `checkpoint=None` over it, and `evaluate` then found
    nothing to evaluate). Said on the console, trial by trial."""
    done = {(r["combination"], r["seed"]): r for r in previous.to_dict("records") if _complete(r)}
    rows = []
    for r in new.to_dict("records"):
        old = done.get((r["combination"], r["seed"]))
        if old is not None and not _complete(r):
            lacks = "" if isinstance(r.get("checkpoint"), str) and r["checkpoint"] else ", without a checkpoint"
            logger.info(f"{old['trial']}: kept as finished with checkpoint {old['checkpoint']} (this run reported "
                        f"it as {r.get('status')}{lacks})")
            r = old
        rows.append(r)
    return pd.DataFrame(rows, columns=list(dict.fromkeys([*new.columns, *previous.columns])))


def read_results(out: Path | str) -> pd.DataFrame | None:
    path = ExperimentLayout(out).results
    return storage.read_parquet(path) if storage.is_file(path) else None


def write_results(df: pd.DataFrame, out: Path | str) -> None:
    """`out` is the experiment folder or its URI."""
    storage.write_parquet(df, ExperimentLayout(out).results)
    storage.write_csv(df, ExperimentLayout(out).results_csv)


def print_summary(df: pd.DataFrame, wall_s: float | None = None) -> None:
    cols = [c for c in ["trial", "status", "steps", "val/loss/total", "val/psnr", "test/psnr", "test/ssim", "test/fid",
                        "test/cldice", "test/dice", "wall_time_s", "startup_s"] if c in df.columns]
    # The command's product (the results table, as `ablate launch` / `evaluate` end), printed: not a log line.
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print(df[cols].to_string(index=False))
    if wall_s is not None:
        print(f"{len(df)} trials in {wall_s:.1f} s wall")
