"""TensorBoard HParams summaries, so the HParams tab of `tensorboard --logdir EXP/tensorboard`
compares the trials side by side.

For every trial, EXP/tensorboard/<trial>/hparams/ becomes one HParams *session*
(a run of its own, next to the trial's training run EXP/tensorboard/<trial>):
  - the experiment summary (every hparam with its type and, for strings, its values;
    every metric tag), identical in every session so whichever TensorBoard reads first
    describes the whole grid;
  - the session start info: this trial's hparam values; the session end info;
  - one scalar per metric at the trial's final step: the final val/<...> values and the
    test/<metric> means (test/psnr, test/abs_delta_average_width, test/fid, ...).

Hparams: combination, seed, model.preset, data.size, train.lr, train.steps,
model.edge_channel (a string, "none" for RGB only) and every loss weight / option
(loss.<term>.<key>; a term a trial does not use has weight 0; other missing options
read "absent"). Booleans are written as the strings "true"/"false" (TensorBoard's
numeric bools cannot be filtered by value). Re-running replaces the folder
atomically (written beside it, then renamed).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ablate.experiment_layout import ExperimentLayout
from ablate.report.collect import Experiment, _present, edge_setting

SESSION_DIR = "hparams"
ABSENT = "absent"


def _hparam_keys(columns) -> list[str]:
    fixed = ["config.model.preset", "config.data.size", "config.train.lr", "config.train.steps"]
    loss = sorted(c for c in columns if c.startswith("config.loss."))
    return [c for c in fixed if c in columns] + loss


def hparam_table(e: Experiment) -> dict[str, dict]:
    """{trial: {hparam name: value (str | float)}} with one type per hparam across trials."""
    rows = e.trials.to_dict("records")
    keys = _hparam_keys(e.trials.columns)
    table = {r["trial"]: {"combination": str(r["combination"]), "seed": float(r["seed"]),
                          "model.edge_channel": edge_setting(r) or "none"} for r in rows}
    for k in keys:
        name = k[len("config."):]
        values = [r.get(k) for r in rows]
        present = [v for v in values if _present(v)]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present) and present
        conv: Callable[[Any], float | str]
        if numeric and (len(present) == len(values) or k.endswith(".weight")):
            conv = lambda v: float(v) if _present(v) else 0.0  # an absent term weighs 0
        else:
            conv = lambda v: _text(v) if _present(v) else ABSENT
        for r in rows:
            table[r["trial"]][name] = conv(r.get(k))
    return table


def _text(v) -> str:
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def metric_table(e: Experiment) -> dict[str, dict[str, float]]:
    """{trial: {tag: value}}: final val/<...> values and test/<metric> means."""
    out: dict[str, dict[str, float]] = {t: {} for t in e.trials["trial"]}
    for r in e.trial_metrics.to_dict("records"):
        tag = r["metric"] if r["source"] == "val" else f"test/{r['metric']}"
        if math.isfinite(r["value"]):
            out.setdefault(r["trial"], {})[tag] = float(r["value"])
    return out


def write_hparams(e: Experiment) -> list[Path]:
    """Write one HParams session per trial; returns the session folders."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    logdir = Path(ExperimentLayout(e.exp).tensorboard)
    hp, metrics = hparam_table(e), metric_table(e)
    if not hp:
        return []
    names = list(next(iter(hp.values())))
    tags = sorted({t for m in metrics.values() for t in m})
    example = next(iter(hp.values()))
    discrete = {k: sorted({h[k] for h in hp.values()}) for k in names if isinstance(example[k], str)}
    experiment, _, _ = hparams(example, {t: 0.0 for t in tags}, discrete)
    steps = dict(zip(e.trials["trial"], e.trials["steps"] if "steps" in e.trials.columns else [0] * len(e.trials)))
    written = []
    for trial, values in hp.items():
        _, start, end = hparams(values, {})
        final = os.path.join(logdir, trial, SESSION_DIR)
        tmp = os.path.join(logdir, trial, f".{SESSION_DIR}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        given = steps.get(trial)
        step = int(given) if given is not None and _present(given) else 0
        with SummaryWriter(log_dir=tmp) as w:
            fw = w._get_file_writer()
            fw.add_summary(experiment, step)
            fw.add_summary(start, step)
            for tag, v in sorted(metrics.get(trial, {}).items()):
                w.add_scalar(tag, v, step)
            fw.add_summary(end, step)
        old = os.path.join(logdir, trial, f".{SESSION_DIR}.old-{os.getpid()}")
        if os.path.isdir(final):
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        written.append(Path(final))
    return written
