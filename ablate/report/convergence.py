"""Did each trial train to a plateau? Its validation curve, read back from TensorBoard.

A study that compares loss terms after a fixed step count compares how fast each arm
learns, not where it ends, unless every trial has stopped improving. `plateau_check`
asks that of one curve: over the last `tail` fraction of the run's steps, a least-squares
line through the validation values must change by no more than `tolerance` of their
mean (in either direction: a curve still falling is not done, one rising is not flat).
The numbers behind the answer are kept, so a reader can judge the threshold.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_TAG = "val/loss/l1"  # the reconstruction term every arm of the paper's grids has
TAIL = 0.2
TOLERANCE = 0.02


@dataclass(frozen=True)
class PlateauCheck:
    points: int  # validation points in the tail
    tail_from: int  # first step of the tail window
    last_step: int
    tail_mean: float
    tail_change: float  # fitted change of the value over the tail window, in its units
    relative_change: float  # tail_change / tail_mean
    first_value: float
    flat: bool | None  # None: too few points to tell
    reason: str
    # Descriptive, beside the rule: the 95% t interval of the fitted change over the tail.
    # Validation on a few images is noisy; an interval that spans 0 says no trend is
    # detectable at that noise, which the rule alone (a point estimate) does not.
    change_ci_low: float = float("nan")
    change_ci_high: float = float("nan")


def plateau_check(steps, values, tail: float = TAIL, tolerance: float = TOLERANCE,
                  min_points: int = 3) -> PlateauCheck:
    """Whether the curve (steps, values) is flat over its last `tail` fraction of steps.

    Args:
        steps: the steps of the validation points (any order; sorted here).
        values: the validation values at those steps (non-finite ones are dropped).
        tail: fraction of the run's step range that must be flat (0 < tail < 1).
        tolerance: largest |fitted change over the tail| / |tail mean| that counts as flat.
        min_points: fewest tail points a verdict needs.
    """
    if not 0 < tail < 1:
        raise ValueError(f"tail must be in (0, 1), got {tail}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    if s.shape != v.shape:
        raise ValueError(f"steps and values differ in length: {s.shape} vs {v.shape}")
    keep = np.isfinite(s) & np.isfinite(v)
    s, v = s[keep], v[keep]
    if s.size == 0:
        return PlateauCheck(0, 0, 0, float("nan"), float("nan"), float("nan"), float("nan"), None, "no finite values")
    order = np.argsort(s, kind="stable")
    s, v = s[order], v[order]
    start = s[-1] - tail * s[-1]  # the run's steps are 0..last: the tail is its last `tail` of them
    t = s >= start
    n = int(t.sum())
    mean = float(v[t].mean())
    base: dict[str, Any] = {"points": n, "tail_from": int(np.ceil(start)), "last_step": int(s[-1]), "tail_mean": mean,
            "first_value": float(v[0])}
    if n < min_points:
        return PlateauCheck(**base, tail_change=float("nan"), relative_change=float("nan"), flat=None,
                            reason=f"{n} validation point(s) in the last {tail:.0%} of steps; {min_points} needed")
    x, y = s[t], v[t]
    slope, intercept = (float(c) for c in np.polyfit(x, y, 1))
    span = float(x[-1] - x[0])
    change = slope * span
    rel = change / abs(mean) if mean != 0 else float("inf")
    flat = bool(abs(rel) <= tolerance)
    word = "flat" if flat else ("still falling" if rel < 0 else "rising")
    lo = hi = float("nan")
    if n > 2:
        from scipy import stats

        resid = y - (slope * x + intercept)
        se = math.sqrt(float(resid @ resid) / (n - 2) / float(((x - x.mean()) ** 2).sum()))
        half = float(stats.t.ppf(0.975, n - 2)) * se * span
        lo, hi = change - half, change + half
    return PlateauCheck(**base, tail_change=change, relative_change=rel, flat=flat,
                        reason=f"{word}: {rel:+.1%} over steps {int(x[0])}-{int(x[-1])} "
                               f"(tolerance ±{tolerance:.0%})", change_ci_low=lo, change_ci_high=hi)


def read_curves(tb_root: str | Path, tag: str = DEFAULT_TAG) -> dict[str, pd.DataFrame]:
    """{run folder name: DataFrame(step, value)} for every run under `tb_root` that logged `tag`
    (an experiment's `tensorboard/` folder: one sub-folder per trial). A step written twice
    (a trial resumed from a checkpoint repeats the steps since it) keeps its last value."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = Path(tb_root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no TensorBoard folder")
    out: dict[str, pd.DataFrame] = {}
    for run in sorted(p for p in root.iterdir() if p.is_dir()):
        acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 1, "histograms": 1, "tensors": 1})
        acc.Reload()
        if tag not in acc.Tags().get("scalars", []):
            continue
        ev = acc.Scalars(tag)
        df = pd.DataFrame({"step": [e.step for e in ev], "value": [e.value for e in ev], "t": [e.wall_time for e in ev]})
        out[run.name] = (df.sort_values(["step", "t"]).drop_duplicates("step", keep="last")
                         .drop(columns="t").reset_index(drop=True))
    return out


def plateau_table(curves: dict[str, pd.DataFrame], tail: float = TAIL, tolerance: float = TOLERANCE) -> pd.DataFrame:
    """One row per run: its PlateauCheck's fields."""
    rows = [{"run": name, **asdict(plateau_check(df["step"], df["value"], tail, tolerance))}
            for name, df in curves.items()]
    return pd.DataFrame(rows, columns=["run", *PlateauCheck.__dataclass_fields__])
