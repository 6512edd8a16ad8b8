"""`ablate launch` of a tuned grid, stage 1: every searched combination's search run with Ray
Tune (ablate/train/search.py says what a stage-1 trial is), then the grid of stage 2, each
combination at its chosen point, handed back for `train_grid` to train with the search
space's seeds.

Resumable like a grid: searches already decided (search/chosen.json) are skipped, one killed
midway is restored from its Tune state, and stage 2 is restored when its Tune state exists.
"""

from __future__ import annotations

import dataclasses
import logging
import math

from ablate import storage
from ablate.errors import AblateError
from ablate.experiment_layout import ExperimentLayout
from ablate.runtime import node_cpus, node_gpus, plan_placement, ray_session, sigterm_as_interrupt, total_cpus
from ablate.schemas import TuningRecord
from ablate.specs import ConfigError, SchedulerChoice
from ablate.train.driver import trial_key
from ablate.train.experiment import grid_record, read_record, write_record
from ablate.train.launch import LaunchOptions, PreparedGrid, placement_line
from ablate.train.search import (
    SearchSetup,
    best_row,
    chosen_point,
    read_chosen,
    run_search_trial,
    scheduler,
    search_algorithm,
    search_setups,
    shared_splits,
    trial_rows,
    tune_distribution,
    tuned_grid,
    write_chosen,
)
from ablate.weights.ship import ship

logger = logging.getLogger(__name__)


def search_view_callback():
    """The live view's feed for one search (a class made late: Tune's Callback imports Ray)."""
    from ablate.train.tune_feed import LiveViewCallback, save_trial_output

    class SearchView(LiveViewCallback):
        """Rows `<combination> #<order>`: Tune lists a search's trials in the order they were
        proposed (a searcher's trial ids carry no index)."""

        def __init__(self, combination: str, view, logs_dir=None):
            super().__init__(view, logs_dir)
            self.combination = combination
            self.order: dict[str, int] = {}

        def __getstate__(self) -> dict:
            return {**super().__getstate__(), "combination": self.combination, "order": {}}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.order.update({t.trial_id: i for i, t in enumerate(trials)})
            super().on_trial_start(iteration, trials, trial, **info)

        def on_trial_complete(self, iteration, trials, trial, **info):
            last = trial.last_result or {}
            if self.view and not last.get("final") and not last.get("stop_reason"):  # the scheduler stopped it
                save_trial_output(trial, self.logs_dir)
                self.view.trial_finished(self._key(trial), last, stopped_by="ASHA (pruned)")
                return
            super().on_trial_complete(iteration, trials, trial, **info)

        def _key(self, trial) -> str:  # type: ignore[override]
            return f"{self.combination} #{self.order.get(trial.trial_id, '?')}"

    return SearchView


def search_combination(setup: SearchSetup, prepared: PreparedGrid, opts: LaunchOptions, placement, shipped: dict,
                       share_data: bool = True):
    """Run (or restore and finish) one combination's search; its Tune ResultGrid.

    Args:
        share_data: decode the train and val splits once for the search's trials
            (`search.shared_splits`); False streams and decodes them in every trial (the
            start-up benchmark's baseline, benchmarks/search_startup.py).
    """
    from ray import tune

    from ablate.runtime import ray_output
    from ablate.train.live_view import GridView
    from ablate.train.tune_feed import LiveViewCallback

    SearchView = search_view_callback()
    out = prepared.out
    layout = ExperimentLayout(out)
    t = setup.tune
    view = GridView(concurrent=placement.concurrent)
    for i in range(t.budget):
        view.add(f"{setup.combination} #{i}", setup.combination, setup.spec.seed, setup.spec.train.steps,
                 setup.spec.train.batch_size)

    feed = SearchView(setup.combination, view, ray_output.local_logs(out))
    trainable = tune.with_resources(
        tune.with_parameters(run_search_trial, setup=setup, data_dir=prepared.data, exp_dir=str(out),
                             placement=placement, max_failures=opts.max_failures, weights_manifest=shipped,
                             shared=shared_splits(setup, prepared.data) if share_data else None),
        {"cpu": placement.driver_cpus},
    )
    path = layout.search_run(setup.combination)
    if tune.Tuner.can_restore(path):
        logger.info(f"stage 1: resuming the search of {setup.combination} from {path}")
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
        local = getattr(tuner, "_local_tuner", None)  # as train_grid: this launch's view on the restored run
        if local is not None:
            restored = local.get_run_config()
            restored.callbacks = [*(c for c in restored.callbacks or [] if not isinstance(c, LiveViewCallback)), feed]
            restored.verbose, restored.log_to_file = ray_output.tune_verbosity(), True
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={f"p{i}": tune_distribution(t.searched(setup.combination)[k]) for i, k in enumerate(setup.keys)},
            tune_config=tune.TuneConfig(
                search_alg=search_algorithm(setup, placement.concurrent),
                scheduler=scheduler(setup),
                num_samples=t.budget,
                # A trial ASHA stops is still inside its Train run's teardown when Tune would hand
                # its actor to the next trial (Tune gives a reset 2 s: the next trial then fails,
                # "Could not re-use actor"); a stopped trial's actor is killed instead, its Train
                # run with it. Trials that end by themselves (no scheduler) hand theirs on.
                reuse_actors=t.scheduler is SchedulerChoice.none,
                trial_name_creator=lambda tr: setup.trial_name(tr.trial_id),
                trial_dirname_creator=lambda tr: setup.trial_name(tr.trial_id),
            ),
            run_config=tune.RunConfig(name=setup.combination, storage_path=layout.search,
                                      failure_config=tune.FailureConfig(max_failures=opts.trial_retries),
                                      verbose=ray_output.tune_verbosity(), log_to_file=True, callbacks=[feed]),
        )
    with sigterm_as_interrupt(), view:
        return tuner.fit()


def _merge_rows(out, combination: str, rows: list[dict]):
    import pandas as pd

    path = ExperimentLayout(out).search_trials
    new = pd.DataFrame(rows)
    if storage.is_file(path):
        old = storage.read_parquet(path)
        old = old[old["combination"] != combination]
        new = pd.concat([old, new], ignore_index=True) if len(old) else new
    storage.write_parquet(new.reset_index(drop=True), path)


def run_searches(prepared: PreparedGrid, opts: LaunchOptions, share_data: bool = True) -> PreparedGrid:
    """Stage 1: search every searched combination not yet decided; returns `prepared` with the
    grid of stage 2 (each combination at its chosen point). `share_data`: as `search_combination`."""
    grid, out = prepared.grid, prepared.out
    tune_spec = grid.tune
    assert tune_spec is not None  # the pipeline calls this for a tuned grid only
    if read_record(out) is None:  # grid.json first: a launch killed in stage 1 is then resumable
        write_record(out, grid_record(prepared.full, prepared.data, [trial_key(s) for s in grid.trials],
                                      data_hash=prepared.data_hash))
    record = read_chosen(out) or TuningRecord(tune=tune_spec.record())
    if record.tune != tune_spec.record():
        raise ConfigError(f"{ExperimentLayout(out).search_chosen}: searched with another tune block "
                          f"({record.tune}); use another --out, or the same search space to resume")
    setups = search_setups(grid)
    n1, n2 = len(setups) * tune_spec.budget, len(grid.trials)
    logger.info(f"stage 1 of 2: searching {len(setups)} combination(s), {tune_spec.budget} trials each "
                f"({n1} in all) on the train and val splits at seed {tune_spec.search_seed}; stage 2: {n2} trials")
    with ray_session(opts.address):
        placement = plan_placement(total_cpus(), opts.workers, opts.cpus_per_worker, opts.gpus_per_worker,
                                   opts.concurrent, node_cpus=node_cpus(), node_gpus=node_gpus())
        if opts.threads_per_worker is not None:
            placement = dataclasses.replace(placement, threads_per_worker=opts.threads_per_worker)
        logger.info(placement_line(placement, opts))
        shipped = ship(prepared.files, out) if len(node_cpus()) > 1 else {}
        for setup in setups:
            if setup.combination in record.chosen:
                logger.info(f"stage 1: {setup.combination} already searched; its point {record.chosen[setup.combination].point}")
                continue
            result_grid = search_combination(setup, prepared, opts, placement, shipped, share_data=share_data)
            ended = result_grid.num_terminated + result_grid.num_errors
            if ended < tune_spec.budget:  # interrupted (Ctrl-C, SIGTERM): Tune saved its state
                raise SearchInterrupted(f"stage 1: the search of {setup.combination} stopped after {ended} of "
                                        f"{tune_spec.budget} trials; resume with --resume")
            # Only a search that ended has its rows written: an unfinished trial would read as pruned.
            rows = trial_rows(setup, result_grid)
            _merge_rows(out, setup.combination, rows)
            best = best_row(setup, rows)
            picked = chosen_point(setup, best)
            record = TuningRecord(tune=record.tune, chosen={**record.chosen, setup.combination: picked})
            write_chosen(out, record)
            done = sum(r["status"] == "done" for r in rows)
            pruned = sum(r["status"] == "pruned" for r in rows)
            logger.info(f"stage 1: {setup.combination}: {done} finished, {pruned} pruned; best {tune_spec.objective} "
                        f"{picked.objective:.4g} at {picked.point} ({picked.trial})"
                        + _default_line(rows, tune_spec.objective))
    return dataclasses.replace(prepared, grid=tuned_grid(grid, record))


def _default_line(rows: list[dict], objective: str) -> str:
    first = next((r for r in rows if r["default"]), None)
    if first is None or not math.isfinite(first["objective"]):
        return ""
    return f"; the as-written point: {objective} {first['objective']:.4g} ({first['status']} at step {first['steps']})"


class SearchInterrupted(AblateError, RuntimeError):
    """Stage 1 stopped before a search ended (its state is saved; --resume continues it)."""


__all__ = ["SearchInterrupted", "run_searches"]
