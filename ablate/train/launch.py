"""`ablate launch`'s training stage: the grid's trials run with Ray Tune, each trial
a TorchTrainer run (`train/driver.py`), results collected into results.parquet.

Evaluation and the report come after, in `ablate.pipeline`; this module knows only
training. Placement follows `runtime.placement` (one whole CPU stays free for Ray Data).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ablate import storage
from ablate.data.identity import manifest_sha256
from ablate.runtime import node_cpus, node_gpus, plan_placement, ray_session, sigterm_as_interrupt, total_cpus
from ablate.specs import ConfigError, Grid
from ablate.train.driver import run_trial, trial_key
from ablate.train.experiment import (
    check_experiment_folder,
    grid_record,
    launched_before,
    read_record,
    record_dataset,
    write_record,
)
from ablate.train.grid import check_batches, check_data, preflight_losses, trial_table
from ablate.train.pretrained import FoundationStage, check_given_files, choose_auto_foundation, settle_weights
from ablate.weights import WeightsMissing
from ablate.weights.ship import ship

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaunchOptions:
    grid: str
    data: str | None = None
    out: str | None = None
    workers: int = 1
    cpus_per_worker: float | None = None
    threads_per_worker: int | None = None  # torch intra-op threads; None = the worker's CPUs, rounded
    gpus_per_worker: float = 0.0
    concurrent: int | None = None
    address: str | None = None
    steps: int | None = None
    epochs: int | None = None
    size: int | None = None
    precision: str | None = None  # override train.precision of every trial (auto | bf16 | fp16 | fp32)
    compile: bool | None = None  # override train.compile of every trial
    max_failures: int = 2  # worker-group restarts per trial, from its last checkpoint
    trial_retries: int = 1  # whole-trial retries by Tune (after the worker restarts are spent)
    resume: bool = False
    evaluate: bool = True  # evaluate finished trials on the test split after training (ablate.pipeline)
    segmenter: str | None = None  # for evaluation; None = our U-Net where present, else the ridge fallback
    dry_run: bool = False
    estimate: bool = False  # probe each distinct configuration and print the grid's expected wall time; no training
    only: tuple[str, ...] = ()  # run these combinations of the grid (names as in the search space)
    fm_steps: int = 2000  # steps of the fundus MAE stage, when `foundation: auto` finds no foundation model
    search_only: bool = False  # tuned arms: stop after stage 1 (the searches); a later --resume runs stage 2

    def validate(self) -> None:
        """Every number the command line takes, checked before anything else (and before Ray):
        one ConfigError naming the option and the value. Tune reads --concurrent 0 as unlimited,
        and a 0-CPU worker would lift the concurrency cap; neither is what anyone means."""
        at_least = [("--workers", self.workers, 1), ("--concurrent", self.concurrent, 1),
                    ("--threads-per-worker", self.threads_per_worker, 1), ("--steps", self.steps, 1),
                    ("--epochs", self.epochs, 1), ("--trial-retries", self.trial_retries, 0),
                    ("--fm-steps", self.fm_steps, 1)]
        for option, value, low in at_least:
            if value is not None and value < low:
                raise ConfigError(f"{option} must be >= {low}, got {value}")
        if self.size is not None and (self.size < 16 or self.size % 8):  # the models' rule (config.py)
            raise ConfigError(f"--size must be a multiple of 8 and >= 16, got {self.size}")
        if self.max_failures < -1:
            raise ConfigError(f"--max-failures must be >= 0, or -1 for unlimited restarts, got {self.max_failures}")
        # Ray shares CPUs in 1/10000ths; below 0.01 a worker is as good as CPU-less.
        if self.cpus_per_worker is not None and not (math.isfinite(self.cpus_per_worker) and self.cpus_per_worker >= 0.01):
            raise ConfigError(f"--cpus-per-worker must be > 0 (at least 0.01), got {self.cpus_per_worker:g}")
        if not (math.isfinite(self.gpus_per_worker) and self.gpus_per_worker >= 0):
            raise ConfigError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker:g}")


def failure_policy(opts: LaunchOptions) -> str:
    """The restarts a launch allows, for the placement line (-1 said as unlimited, never shown raw)."""
    restarts = "unlimited" if opts.max_failures == -1 else str(opts.max_failures)
    return (f"{restarts} worker-group restart(s) per trial (--max-failures {opts.max_failures}), then "
            f"{opts.trial_retries} whole-trial retr{'y' if opts.trial_retries == 1 else 'ies'}")


def placement_line(placement, opts: LaunchOptions) -> str:
    return (f"placement: {placement.workers} worker(s) x {placement.cpus_per_worker:g} CPU"
            f"{f' + {placement.gpus_per_worker:g} GPU' if placement.gpus_per_worker else ''} per trial, "
            f"{placement.concurrent} trial(s) at a time, {placement.threads_per_worker} torch thread(s) per worker, "
            f"{placement.data_cpus:g} CPU(s) kept for Ray Data; {failure_policy(opts)}")


@dataclass(frozen=True)
class PreparedGrid:
    """A grid that passed every check that needs no Ray: ready to train."""
    grid: Grid  # the trials of this launch, `auto` decided
    full: Grid  # the whole search space as written (the experiment's fingerprint)
    out: Path | str
    tune_parent: str
    tune_name: str
    data: str
    stage: FoundationStage | None = None  # pretrain our fundus MAE first
    files: dict = dataclasses.field(default_factory=dict)  # pretrained files, verified here: {name: path}
    data_hash: str | None = None  # the dataset's identity (sha256 of its manifest.json), kept in grid.json


@dataclass(frozen=True)
class GridRun:
    out: Path | str  # the experiment folder, or its URI for --out on object storage
    data: str  # the prepared dataset the trials read
    table: pd.DataFrame  # results.parquet
    wall_s: float


def experiment_location(out: str | None, grid_name: str) -> tuple[Path | str, str, str]:
    """(experiment folder or URI, Tune's storage_path, Tune's run name)."""
    if out is not None and storage.is_uri(out):
        uri = storage.normalize(out)
        parent, name = storage.split(uri)
        return uri, parent, name
    folder = Path(out or Path("runs") / grid_name).resolve()
    return folder, str(folder.parent), folder.name


def dataset_location(data: str | None) -> str:
    """The prepared dataset: as given (a URI or a local folder), or the built-in demo set."""
    if data is None:
        from ablate.data.demo import NOTICE, ensure_demo

        logger.warning(NOTICE)
        return str(ensure_demo())
    return storage.normalize(data) if storage.is_uri(data) else str(Path(data).resolve())


def local_placement(opts: LaunchOptions):
    """The placement on this machine alone (the Ray `train_grid` would start), planned
    before Ray starts: a grid its CPUs or GPUs cannot hold is refused here, naming the shortfall."""
    from ablate.runtime import local_resources

    cpus, gpus = local_resources()
    placement = plan_placement(cpus, opts.workers, opts.cpus_per_worker, opts.gpus_per_worker, opts.concurrent,
                               node_cpus=[cpus], node_gpus=[gpus])
    if opts.threads_per_worker is not None:
        placement = dataclasses.replace(placement, threads_per_worker=opts.threads_per_worker)
    return placement


def print_estimate(grid: Grid, opts: LaunchOptions) -> dict:
    """The grid's expected wall time on this machine, from a probe of each distinct configuration
    (`train/estimate.py`), with the placement a launch here would use."""
    from ablate.train.estimate import estimate, format_estimate

    if opts.address is not None:
        raise ConfigError("--estimate probes this machine; run it on a node like the cluster's, without --address")
    placement = local_placement(opts)
    # Packed GPU trials: assume no gain from packing (each step as many times slower as
    # trials share a GPU); benchmarks/gpu.py measures the real gain.
    per_gpu = min(placement.concurrent, int(1 / opts.gpus_per_worker)) if 0 < opts.gpus_per_worker < 1 else 1
    logger.info(f"estimate: probing {len(grid.trials)} trials' distinct configurations on this machine "
                f"({placement.concurrent} at a time, {placement.threads_per_worker} thread(s) per worker)")
    result = estimate(grid, placement.concurrent, workers=opts.workers, slowdown=float(per_gpu),
                      threads=placement.threads_per_worker, device="cuda" if opts.gpus_per_worker else "cpu")
    print(format_estimate(result, placement.concurrent, float(per_gpu)))  # the product of --estimate: printed
    if grid.tune is not None:
        result["stage1_wall_s"] = search_wall(grid, result, placement.concurrent)
        print(f"tuned arms: stage 1 (the searches) {result['stage1_wall_s'] / 3600:.2f} h at most (every trial to its "
              f"last step; ASHA stops some sooner) + stage 2 (the grid above) {result['wall_s'] / 3600:.2f} h = "
              f"{(result['stage1_wall_s'] + result['wall_s']) / 3600:.2f} h")
    return result


def search_wall(grid: Grid, result: dict, concurrent: int) -> float:
    """Stage 1's wall time from the probes of the grid's configurations: each search's budget of
    trials, each as long as its combination's trial (the loss weights searched do not change a
    step's cost), on `concurrent` slots, one search after another (as `run_searches` runs them)."""
    from ablate.train.estimate import project_wall
    from ablate.train.search import search_setups

    assert grid.tune is not None
    per = {name: seconds for names, _, _, seconds in result["configs"] for name in names}
    return sum(project_wall([per[s.combination]] * grid.tune.budget, concurrent) for s in search_setups(grid))


def stages_line(grid: Grid) -> str:
    """A tuned grid's two stages, counted (the head of --dry-run and of a launch)."""
    from ablate.train.search import search_setups

    t = grid.tune
    assert t is not None
    setups = search_setups(grid)
    searched = ", ".join(f"{s.combination} ({', '.join(s.keys)})" for s in setups)
    return (f"tuned arms: stage 1 searches {searched}: {len(setups)} x {t.budget} = {len(setups) * t.budget} trials "
            f"at seed {t.search_seed} on train/val ({t.algorithm} search, {t.scheduler} scheduler, objective "
            f"{t.objective}); stage 2 retrains each at its chosen point: the {len(grid.trials)} trials above")


def prepare_grid(opts: LaunchOptions, full: Grid, grid: Grid) -> PreparedGrid | None:
    """Check the grid, the data, every pretrained file (fetched where missing) and the
    experiment folder before Ray starts; prints the trial table. None for a dry run, which
    fetches nothing and lists what a launch would still need.

    Args:
        opts: the launch's options (checked here first, `LaunchOptions.validate`).
        full: the whole search space as written, with the launch's overrides (the
            experiment's fingerprint); read from YAML above this layer (`ablate.config.resolve_grid`).
        grid: the trials of this launch (`--only`); `full` when all run.
    """
    opts.validate()  # the command line's numbers first: nothing below runs on a bad one
    out, tune_parent, tune_name = experiment_location(opts.out, full.name)
    if opts.search_only and grid.tune is None:
        raise ConfigError(f"--search-only: {grid.source} has no tune: block, so no search to stop after; drop "
                          "--search-only, or add a tune: block (README, Tuned arms)")
    data_dir = dataset_location(opts.data)
    # Tuned arms: the test split is not opened before stage 2 (its count is checked, its
    # shards are verified when stage 2 starts: `verify_test_split`).
    check_data(data_dir, grid, evaluate=opts.evaluate, read_test=grid.tune is None)
    # Ray will start here: refuse a placement it cannot hold before it starts (a dry run too),
    # and before any pretrained file is fetched.
    placement = local_placement(opts) if opts.address is None else None
    check_batches(grid, opts.workers)  # each trial's workers would refuse it, after Ray started them
    fetch = not (opts.dry_run or opts.estimate)
    choice = choose_auto_foundation(grid, data_dir, fetch=fetch)
    grid = choice.grid
    # A weights file the user named must at least be a torch file: refused here, not in a trial.
    check_given_files(grid, opts.evaluate, choice.stage.out_file if choice.stage else None)
    only = f" (--only {','.join(opts.only)} of {len(full.trials)})" if opts.only else ""
    # The trial table is the product of --dry-run (and the head of a launch's output): printed, not logged.
    print(f"grid {grid.name!r} from {grid.source}: {len(grid.trials)} trials{only} -> {out}")
    print(trial_table(grid))
    if grid.tune is not None:
        print(stages_line(grid))
    if choice.note:
        logger.info(choice.note)
    files, missing = settle_weights(grid, choice, fetch=fetch, evaluate=opts.evaluate)  # a launch raises here, listing every missing file
    stage_file = choice.stage.out_file if choice.stage else None
    try:
        preflight_losses(grid, made_by_stage=stage_file)  # after the table, so a dry run still shows the grid
    except WeightsMissing:
        if not ((opts.dry_run or opts.estimate) and missing):  # a dry run has just listed the missing files
            raise
    if opts.estimate:
        print_estimate(grid, opts)
        return None
    if opts.dry_run:  # a launch prints the placement Ray gives it (train_grid)
        logger.info(placement_line(placement, opts) if placement is not None else
                    f"placement: decided on the cluster at {opts.address} once joined; {failure_policy(opts)}")
        if missing:
            logger.info(f"dry run: a launch would fetch these first, or stop here:\n{missing}")
        return None
    data_hash = manifest_sha256(data_dir)
    check_experiment_folder(out, full, opts.resume, data_dir, launching=[trial_key(s) for s in grid.trials],
                            data_hash=data_hash)
    return PreparedGrid(grid, full, out, tune_parent, tune_name, data_dir, choice.stage, files, data_hash)


def train_grid(prepared: PreparedGrid, opts: LaunchOptions) -> GridRun:
    """Train every trial with Ray Tune (joining `opts.address`, or a Ray started here)."""
    from ray import tune

    from ablate.runtime import ray_output
    from ablate.train.live_view import GridView
    from ablate.train.results import collect_results, merge_results, print_summary, read_results, write_results
    from ablate.train.tune_feed import LiveViewCallback

    grid, out, data_dir = prepared.grid, prepared.out, prepared.data
    with ray_session(opts.address):
        placement = plan_placement(total_cpus(), opts.workers, opts.cpus_per_worker, opts.gpus_per_worker,
                                   opts.concurrent, node_cpus=node_cpus(), node_gpus=node_gpus())
        if opts.threads_per_worker is not None:  # checked >= 1 in LaunchOptions.validate
            placement = dataclasses.replace(placement, threads_per_worker=opts.threads_per_worker)
        logger.info(placement_line(placement, opts))
        trials = {trial_key(s): s for s in grid.trials}
        view = GridView(concurrent=placement.concurrent)
        for key, spec in trials.items():
            view.add(key, spec.combination, spec.seed, spec.train.steps if spec.train.epochs is None else None,
                     spec.train.batch_size)
        feed = LiveViewCallback(view, ray_output.local_logs(out))
        # Several nodes: the files verified here go to the others through the experiment, once.
        shipped = ship(prepared.files, out) if len(node_cpus()) > 1 else {}
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, trials=trials, data_dir=data_dir, exp_dir=str(out), placement=placement,
                                 max_failures=opts.max_failures, weights_manifest=shipped),
            {"cpu": placement.driver_cpus},
        )
        if opts.resume:
            if prepared.data_hash:
                record_dataset(out, prepared.data_hash)  # a record from before the hash was kept gains it
            # Finished trials are kept as they are; unfinished and errored ones continue
            # from their last checkpoint (each Train run is named after its trial).
            tuner = tune.Tuner.restore(str(out), trainable, resume_unfinished=True, resume_errored=True)
            # Restore takes no RunConfig: the restored one gets this launch's console settings.
            # A private attribute of Tune 2.60's Tuner (no public setter after restore).
            local = getattr(tuner, "_local_tuner", None)
            if local is None:
                logger.warning("this Ray's Tuner has no _local_tuner: the resumed grid shows Tune's own output, "
                               "not the live view")
            else:
                restored = local.get_run_config()
                restored.callbacks = [*(c for c in restored.callbacks or []
                                        if not isinstance(c, LiveViewCallback)), feed]
                restored.verbose, restored.log_to_file = ray_output.tune_verbosity(), True
        else:
            launched = sorted(set(launched_before(read_record(out))) | set(trials))
            record = grid_record(prepared.full, data_dir, launched, data_hash=prepared.data_hash)
            write_record(out, record)
            tuner = tune.Tuner(
                trainable,
                param_space={"trial": tune.grid_search(list(trials))},
                tune_config=tune.TuneConfig(
                    max_concurrent_trials=placement.concurrent,
                    # A finished trial's driver process (torch and Ray Train imported: ~3.5 s
                    # here) runs the next trial instead of a fresh actor starting cold.
                    reuse_actors=True,
                    # Names from the trial id (stable across restore), never timestamps.
                    trial_name_creator=lambda t: f"{t.config['trial']}-{t.trial_id}",
                    trial_dirname_creator=lambda t: f"{t.config['trial']}-{t.trial_id}",
                ),
                run_config=tune.RunConfig(name=prepared.tune_name, storage_path=prepared.tune_parent,
                                          failure_config=tune.FailureConfig(max_failures=opts.trial_retries),
                                          # Our live view instead of Tune's tables; each trial's
                                          # stdout/stderr in files (copied to EXP/logs/trials).
                                          verbose=ray_output.tune_verbosity(), log_to_file=True,
                                          callbacks=[feed]),
            )
        t0 = time.time()
        try:
            with sigterm_as_interrupt(), view:
                result_grid = tuner.fit()
        finally:
            logs = ray_output.collect_logs(out)
        wall = time.time() - t0
        if logs:
            logger.info(f"Ray's output (Tune, Ray Data, raylet, workers): {logs}/ (ablate launch --verbose shows it "
                        "here)" + (f"; uploaded from {ray_output.local_logs(out)}" if storage.is_uri(out) else ""))
        table = collect_results(result_grid, trials)
    if storage.is_uri(out):
        # Ray reports these as paths on the bucket, without the scheme; store URIs.
        for col in ("checkpoint", "trial_dir"):
            table[col] = table[col].map(lambda p: storage.as_uri(str(out), p))
    table = merge_results(read_results(out), table)  # trials of earlier `--only` launches stay
    write_results(table, out)
    print_summary(table, wall)
    return GridRun(out=out, data=data_dir, table=table, wall_s=wall)
