"""The Tuning section's content: what stage 1 of a tuned grid searched and chose, per combination.

Tuned arms run in two stages (ablate.tuning): stage 1 searches each combination's `tune.space`
on the train and val splits at the search seed, stage 2 retrains each combination's chosen
point with the grid's seeds and evaluates it on test. The verdicts use stage 2 only
(results.parquet); this section shows stage 1, from its files:

  EXP/grid.json           `tune`: TuneSpec.record() (schemas.TuneRecord); absent: no section
  EXP/search/trials.parquet  one row per stage-1 trial: combination, trial, order (0-based, in the
                          order the combination's points were proposed), default (the as-written
                          point, order 0), status (done | pruned | error | incomplete), steps,
                          objective (its last reported value; NaN: none), param.<key> per searched key
  EXP/search/chosen.json  schemas.TuningRecord: per combination whose search ended, its chosen point

Per combination: the chosen value of each searched key beside the as-written one (the default
trial's), the best objective (chosen.json's) and its margin over the median of the finished
trials, signed so that positive is better in `mode`. Pruned trials stopped early, at fewer steps
than the finished ones: their last values are plotted (ablate.report.plots.search_curves) but
left out of the median. A file of the wrong shape is a ReportError naming the file and the key.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ablate.experiment_layout import SEARCH_CHOSEN, SEARCH_DIR, SEARCH_TRIALS, ExperimentLayout
from ablate.report.collect import Experiment, ReportError
from ablate.schemas import TuneRecord, TuningRecord, problem
from ablate.specs import Distribution, DistributionKind

STATUSES = ("done", "pruned", "error", "incomplete")
REQUIRED = ("combination", "trial", "order", "default", "status", "steps", "objective")
PARAM = "param."  # trials.parquet's column of a searched key: param.<key>


@dataclass(frozen=True)
class SearchedKey:
    """One searched key of a combination: its distribution, the as-written value (the default
    trial's; None where no default trial is in trials.parquet) and the chosen value (None while
    the search has not ended)."""
    key: str
    distribution: str  # e.g. "loguniform[0.01, 10.0]" (ablate.specs.Distribution.describe)
    default: Any
    chosen: Any


@dataclass(frozen=True)
class CombinationSearch:
    """One combination's stage 1."""
    combination: str
    keys: tuple[SearchedKey, ...]
    trials: pd.DataFrame  # its rows of search/trials.parquet, in proposal order
    budget: int
    finished: bool  # in chosen.json: its search ended
    chosen_trial: str | None
    best: float  # chosen.json's objective of the chosen trial; NaN while not finished
    best_steps: int | None
    median: float  # of the finished (status done) trials' objectives; NaN with none
    margin: float  # best over the median, positive = better in the mode; NaN without either

    def count(self, status: str) -> int:
        return int((self.trials["status"] == status).sum())

    @property
    def default(self) -> dict | None:
        """The as-written point's row (order 0), None where it is not in trials.parquet."""
        rows = self.trials[self.trials["default"]]
        return rows.iloc[0].to_dict() if len(rows) else None


@dataclass(frozen=True)
class TuningSection:
    objective: str
    mode: str  # "max" or "min"
    budget: int
    search_seed: int
    seeds: list[int]  # stage 2's, as results.parquet has them
    combinations: list[CombinationSearch]  # searched ones, grid order
    not_searched: list[str]  # the grid's combinations without a space: stage 2 trains them as written
    notes: list[str] = field(default_factory=list)  # files the section is without

    @property
    def disjoint(self) -> bool:
        return self.search_seed not in self.seeds

    @property
    def warnings(self) -> list[str]:
        """Lines for "Read before the numbers": what makes stage 2 other than described."""
        out = []
        if not self.disjoint:
            out.append(f"TUNING: the search seed {self.search_seed} is also one of stage 2's seeds "
                       f"({', '.join(map(str, self.seeds))}): that trial's point was chosen on its own initialisation.")
        out += [f"TUNING: the search of `{c.combination}` has not finished ({len(c.trials)} of {c.budget} trials)."
                for c in self.combinations if not c.finished]
        return out


def finished_median(trials: pd.DataFrame) -> float:
    """The median objective of the trials that finished (status done, a value); NaN with none.
    Pruned trials are left out: they stopped at fewer steps, so their last values are not comparable."""
    values = trials.loc[trials["status"] == "done", "objective"].astype(float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else math.nan


def margin(best: float, median: float, mode: str) -> float:
    """How much better `best` is than `median` in the objective's units: positive = better in `mode`."""
    return (best - median) if mode == "max" else (median - best)


# ---------------------------------------------------------------- reading the files


def _shown(e: Experiment, name: str) -> str:
    return f"{e.location}/{SEARCH_DIR}/{name}"


def _tune(e: Experiment) -> dict | None:
    tune = e.grid.get("tune")
    if tune is None:
        return None
    wrong = problem(tune, TuneRecord)
    if wrong is not None:
        raise ReportError(f"{e.location}/grid.json: tune.{wrong}")
    for combination, keys in tune["space"].items():
        for key, dist in keys.items():
            if len(dist) != 1 or next(iter(dist)) not in {k.value for k in DistributionKind}:
                raise ReportError(f"{e.location}/grid.json: tune.space.{combination}.{key} is {dist!r}, expected one "
                                  f"of {{{', '.join(k.value for k in DistributionKind)}}}: [arguments]")
    return tune


def _chosen(e: Experiment, tune: dict, notes: list[str]) -> dict[str, dict]:
    path = Path(ExperimentLayout(e.exp).search_chosen)
    shown = _shown(e, SEARCH_CHOSEN)
    if not path.is_file():
        notes.append(f"{shown}: not found, so no combination's search is recorded as ended")
        return {}
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as ex:
        raise ReportError(f"{shown}: unreadable ({ex}); stage 1 of `ablate launch` writes it") from None
    wrong = problem(value, TuningRecord)
    if wrong is not None:
        raise ReportError(f"{shown}: {wrong}")
    if value["tune"] != tune:
        differ = sorted(k for k in set(tune) | set(value["tune"]) if tune.get(k) != value["tune"].get(k))
        raise ReportError(f"{shown}: tune differs from grid.json's in {', '.join(differ)}; its points were "
                          "chosen by another search than this experiment's")
    for combination, chosen in value["chosen"].items():
        if combination not in tune["space"]:
            raise ReportError(f"{shown}: chosen.{combination} is no combination of grid.json's tune.space "
                              f"({', '.join(tune['space'])})")
        missing = [k for k in tune["space"][combination] if k not in chosen["point"]]
        if missing:
            raise ReportError(f"{shown}: chosen.{combination}.point.{missing[0]} missing")
    return value["chosen"]


def _trials(e: Experiment, tune: dict, notes: list[str]) -> pd.DataFrame:
    path = Path(ExperimentLayout(e.exp).search_trials)
    shown = _shown(e, SEARCH_TRIALS)
    if not path.is_file():
        notes.append(f"{shown}: not found, so no search curves, trial counts or medians")
        return pd.DataFrame({c: [] for c in REQUIRED}).astype({"default": bool, "objective": float})
    try:
        t = pd.read_parquet(path)
    except Exception as ex:  # noqa: BLE001 - the message names the file
        raise ReportError(f"{shown}: unreadable stage-1 trials table ({type(ex).__name__}: {ex})") from None
    missing = [c for c in REQUIRED if c not in t.columns]
    missing += sorted({PARAM + k for c in set(t["combination"]) & set(tune["space"]) for k in tune["space"][c]}
                      - set(t.columns))
    if missing:
        raise ReportError(f"{shown}: columns {missing} missing; stage 1 of `ablate launch` writes them")
    if bad := sorted(set(t["status"]) - set(STATUSES)):
        raise ReportError(f"{shown}: status {bad} unknown (expected one of {', '.join(STATUSES)})")
    if other := sorted(set(t["combination"]) - set(tune["space"])):
        raise ReportError(f"{shown}: combination(s) {other} are not in grid.json's tune.space "
                          f"({', '.join(tune['space'])})")
    return t.astype({"default": bool, "objective": float})


def _combination(name: str, keys: dict, rows: pd.DataFrame, chosen: dict | None, tune: dict,
                 shown: str) -> CombinationSearch:
    rows = rows.sort_values("order").reset_index(drop=True)
    if chosen is not None and len(rows) and chosen["trial"] not in set(rows["trial"]):
        raise ReportError(f"{shown}: chosen trial {chosen['trial']!r} of `{name}` is not among its rows in "
                          f"{SEARCH_DIR}/{SEARCH_TRIALS}")
    default = rows[rows["default"]]
    if len(default) > 1:
        raise ReportError(f"{shown.rsplit('/', 1)[0]}/{SEARCH_TRIALS}: `{name}` has {len(default)} default rows, "
                          "expected one (the as-written point)")
    searched = tuple(
        SearchedKey(key, Distribution(DistributionKind(kind), tuple(args)).describe(),
                    default.iloc[0][PARAM + key] if len(default) else None,
                    chosen["point"][key] if chosen is not None else None)
        for key, dist in keys.items() for kind, args in dist.items())
    median = finished_median(rows)
    best = float(chosen["objective"]) if chosen is not None else math.nan
    return CombinationSearch(
        combination=name, keys=searched, trials=rows, budget=tune["budget"], finished=chosen is not None,
        chosen_trial=chosen["trial"] if chosen is not None else None, best=best,
        best_steps=chosen["steps"] if chosen is not None else None, median=median,
        margin=margin(best, median, tune["mode"]))


def load_tuning(e: Experiment) -> TuningSection | None:
    """The Tuning section of a tuned experiment (grid.json has `tune`), None for any other.

    Args:
        e: the experiment (its grid.json, folder and stage-2 seeds).

    Raises:
        ReportError: grid.json's tune, search/chosen.json or search/trials.parquet is malformed
            or inconsistent with the others; the message names the file and the key.
    """
    tune = _tune(e)
    if tune is None:
        return None
    notes: list[str] = []
    chosen = _chosen(e, tune, notes)
    trials = _trials(e, tune, notes)
    space = tune["space"]
    order = [c for c in e.combinations if c in space] + sorted(c for c in space if c not in e.combinations)
    combos = [_combination(c, space[c], trials[trials["combination"] == c], chosen.get(c), tune,
                           _shown(e, SEARCH_CHOSEN)) for c in order]
    return TuningSection(objective=tune["objective"], mode=tune["mode"], budget=tune["budget"],
                         search_seed=tune["search_seed"], seeds=e.seeds, combinations=combos,
                         not_searched=[c for c in e.combinations if c not in space], notes=notes)
