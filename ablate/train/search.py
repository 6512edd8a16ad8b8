"""Stage 1 of tuned arms: each searched combination's `tune.space` searched with Ray Tune on
the train and val splits, one Tune experiment per combination under EXP/search/<combination>.

Every stage-1 trial is the combination's spec at one point of its space, at the search seed
(`tune.search_seed`, disjoint from the stage-2 seeds), without its prior (the objective is a
validation metric of the autoencoder). The as-written point runs first (`points_to_evaluate`),
so the report can show the untuned default beside the best. Trials read the train and val
splits only (`driver.fit_trial`); nothing in this stage opens the test split, which the
launch verifies only once stage 2 starts.

A search that ends writes its rows into EXP/search/trials.parquet and its best point into
EXP/search/chosen.json (atomically), so a resumed launch skips it; a search killed midway
is restored from Tune's own state (searcher and scheduler included) and continues.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

from ablate import storage
from ablate.experiment_layout import ExperimentLayout
from ablate.runtime import Placement
from ablate.schemas import ChosenPoint, TuningRecord
from ablate.specs import (
    ConfigError,
    Distribution,
    DistributionKind,
    Grid,
    SchedulerChoice,
    SearchAlgorithm,
    TrialSpec,
    TuneSpec,
)
from ablate.tuning import apply_point, default_point

logger = logging.getLogger(__name__)

# ASHA's halving: of every 3 trials reaching a rung, 1 goes on (Li et al. 2020's default of 3
# keeps the most trials running with a budget of 8; 4 would stop 3 of 4 at every rung).
REDUCTION_FACTOR = 3


@dataclass(frozen=True)
class SearchSetup:
    """One combination's search, as its trials need it by value.

    Args:
        combination: the combination searched.
        spec: its trial as written, at the search seed and without a prior.
        keys: the searched keys, in a fixed order (Tune's parameters p0, p1, ... are these).
        tune: the whole tune block.
    """
    combination: str
    spec: TrialSpec
    keys: tuple[str, ...]
    tune: TuneSpec

    def point(self, config: dict) -> dict:
        """{searched key: value} of a Tune config."""
        return {key: _plain(config[f"p{i}"]) for i, key in enumerate(self.keys)}

    def spec_at(self, config: dict) -> TrialSpec:
        return apply_point(self.spec, self.point(config))

    def trial_name(self, trial_id: str) -> str:
        return f"{self.combination}-search-{trial_id}"


def _plain(value):
    """A numpy scalar from a sampler as the Python number the spec and JSON take."""
    return value.item() if hasattr(value, "item") else value


def search_setups(grid: Grid) -> list[SearchSetup]:
    """The searches of a tuned grid, in the grid's combination order (combinations without
    searched keys are not searched: stage 2 trains them as written)."""
    tune = grid.tune
    assert tune is not None  # only a tuned grid has searches
    setups: list[SearchSetup] = []
    seen: set[str] = set()
    for spec in grid.trials:
        keys = tune.searched(spec.combination)
        if spec.combination in seen or not keys:
            continue
        seen.add(spec.combination)
        first = dataclasses.replace(spec, seed=tune.search_seed, prior=None)
        setups.append(SearchSetup(spec.combination, first, tuple(keys), tune))
    return setups


def tune_distribution(d: Distribution):
    """A Tune search-space object for one searched key."""
    from ray import tune

    if d.kind is DistributionKind.loguniform:
        return tune.loguniform(*d.args)
    if d.kind is DistributionKind.uniform:
        return tune.uniform(*d.args)
    if d.kind is DistributionKind.randint:
        return tune.randint(*d.args)
    return tune.choice(list(d.args))


def search_algorithm(setup: SearchSetup, concurrent: int):
    """Tune's searcher for `tune.algorithm`, seeded from the search seed, the as-written point
    first, proposing at most `concurrent` trials at a time (Tune ignores max_concurrent_trials
    for a BasicVariantGenerator: it must carry the cap itself)."""
    tune = setup.tune
    first = [{f"p{i}": v for i, v in enumerate(default_point(setup.spec, setup.tune.searched(setup.combination)).values())}]
    if tune.algorithm is SearchAlgorithm.optuna:
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        sampler = optuna.samplers.TPESampler(seed=tune.search_seed)
        from ray.tune.search import ConcurrencyLimiter

        searcher = OptunaSearch(metric=tune.objective, mode=tune.mode, points_to_evaluate=first, sampler=sampler)
        return ConcurrencyLimiter(searcher, max_concurrent=concurrent)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(points_to_evaluate=first, random_state=tune.search_seed, max_concurrent=concurrent)


def scheduler(setup: SearchSetup):
    """ASHA on the objective at each val report (`step` is the time axis: trials of one
    combination report at the same steps), or Tune's FIFO (no early stop)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    tune = setup.tune
    if tune.scheduler is SchedulerChoice.none:
        return FIFOScheduler()
    return ASHAScheduler(time_attr="step", metric=tune.objective, mode=tune.mode, max_t=setup.spec.train.steps,
                         grace_period=tune.grace_steps, reduction_factor=REDUCTION_FACTOR)


def run_search_trial(config: dict, *, setup: SearchSetup, data_dir: str, exp_dir: str, placement: Placement,
                     max_failures: int = 0, weights_manifest: dict | None = None, shared: dict | None = None) -> None:
    """Tune's trainable of stage 1: the combination's spec at the config's point (`shared`: the
    search's decoded splits in the object store, or None)."""
    from ray import tune

    from ablate.train.driver import fit_trial

    fit_trial(setup.spec_at(config), tune.get_context().get_trial_name(), data_dir=data_dir, exp_dir=exp_dir,
              placement=placement, max_failures=max_failures, weights_manifest=weights_manifest,
              train_storage=storage.join(ExperimentLayout(exp_dir).search_run(setup.combination), "train"),
              shared=shared)


def shared_splits(setup: SearchSetup, data_dir: str) -> dict | None:
    """The train and val splits decoded once for all of a search's trials, kept in Ray's object
    store (its trials differ in loss weights only: the same images at the same size), so no
    trial reads and decodes them again; None when the decoded train split is over the trial's
    `data.cache_mb` (it is then streamed per trial, as a grid's trials do)."""
    from ablate.data.feed import cache_fits
    from ablate.data.shards import read_manifest
    from ablate.data.stream import split_dataset

    size = setup.spec.data.size
    if not cache_fits(read_manifest(data_dir)["counts"]["train"], size, 1, setup.spec.data.cache_mb):
        logger.info(f"stage 1: {setup.combination}: the decoded train split is over data.cache_mb "
                    f"{setup.spec.data.cache_mb:g}; each trial streams it")
        return None
    return {split: split_dataset(data_dir, split, size, verify=False).materialize() for split in ("train", "val")}


# ---------------------------------------------------------------- the record of the searches

def read_chosen(out) -> TuningRecord | None:
    """search/chosen.json, checked (a ConfigError naming the file and key); None before any search ended."""
    from ablate.train.experiment import read_checked

    value = read_checked(ExperimentLayout(out).search_chosen, TuningRecord, "a search record")
    return None if value is None else TuningRecord.model_validate(value)


def write_chosen(out, record: TuningRecord) -> None:
    storage.write_text(ExperimentLayout(out).search_chosen, record.to_json())  # atomic (storage.write_text)


def trial_rows(setup: SearchSetup, result_grid) -> list[dict]:
    """One row per stage-1 trial of a finished search (trials.parquet's columns)."""
    rows: list[dict] = []
    # A ResultGrid lists its trials in the order Tune created them (its experiment state keeps
    # that order across a restore): the order the searcher proposed them, the default first.
    for order, result in enumerate(result_grid):
        m = dict(result.metrics or {})
        trial_id = m.get("trial_id") or str(result.path).rsplit("-", 1)[-1]
        objective = m.get(setup.tune.objective)
        if result.error is not None or m.get("config_error"):
            status = "error"
        elif m.get("final") and not m.get("stop_reason"):
            status = "done"
        elif m.get("stop_reason"):
            status = "error"  # diverged: a non-finite loss
        else:
            # Not final and no error once Tune's run has returned: the scheduler stopped it.
            status = "pruned" if setup.tune.scheduler is SchedulerChoice.asha else "incomplete"
        rows.append({
            "combination": setup.combination, "trial": setup.trial_name(str(trial_id)), "trial_id": str(trial_id),
            "order": order, "default": order == 0, "seed": setup.spec.seed, "status": status, "steps": m.get("step"),
            "objective": float(objective) if objective is not None else math.nan,
            **{f"param.{k}": v for k, v in setup.point(result.config).items()},
            "wall_time_s": m.get("time_total_s"), "startup_s": m.get("time/startup_s"),
            "checkpoint": m.get("checkpoint_path"),
        })
    return sorted(rows, key=lambda r: r["order"])


def best_row(setup: SearchSetup, rows: list[dict]) -> dict:
    """The finished trial with the best objective; a search where none finished is refused."""
    done = [r for r in rows if r["status"] == "done" and math.isfinite(r["objective"])]
    if not done:
        said = ", ".join(f"{r['trial']} {r['status']}" for r in rows)
        raise ConfigError(f"tune.space.{setup.combination}: no stage-1 trial finished ({said}); stage 2 has no "
                          "point to retrain. Read the trials' logs under logs/trials/, then resume with --resume")
    sign = 1 if setup.tune.mode == "max" else -1
    return max(done, key=lambda r: (sign * r["objective"], -r["order"]))


def chosen_point(setup: SearchSetup, best: dict) -> ChosenPoint:
    return ChosenPoint(point={k: best[f"param.{k}"] for k in setup.keys}, trial=best["trial"],
                       objective=float(best["objective"]), steps=int(best["steps"]))


def tuned_grid(grid: Grid, chosen: TuningRecord) -> Grid:
    """Stage 2's trials: each searched combination's trials at its chosen point (their own
    seeds); the others as written."""
    trials = []
    for spec in grid.trials:
        picked = chosen.chosen.get(spec.combination)
        trials.append(spec if picked is None else apply_point(spec, picked.point))
    return dataclasses.replace(grid, trials=tuple(trials))


__all__ = [
    "SearchSetup",
    "best_row",
    "chosen_point",
    "read_chosen",
    "run_search_trial",
    "scheduler",
    "search_algorithm",
    "search_setups",
    "shared_splits",
    "trial_rows",
    "tune_distribution",
    "tuned_grid",
    "write_chosen",
]
