"""`ablate launch`, the whole job: train the grid (`train.launch`), evaluate every
finished trial on the test split (`evaluate.run`), write the report (`report.publish`).
The one place that runs the stages in order, so no stage reaches up into a later one."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ablate import storage
from ablate.config import resolve_grid
from ablate.experiment_layout import ExperimentLayout
from ablate.lock import command_line, experiment_lock
from ablate.runtime import ray_session
from ablate.train.driver import trial_key
from ablate.train.experiment import check_experiment_folder
from ablate.train.launch import LaunchOptions, PreparedGrid, prepare_grid, train_grid
from ablate.train.pretrained import FoundationStage

logger = logging.getLogger(__name__)

TUNER_STATE = "tuner.pkl"  # what Ray Tune 2.60 saves at an experiment's root (Tuner.can_restore looks for it)

__all__ = ["LaunchOptions", "launch", "prepare_launch"]


def prepare_launch(opts: LaunchOptions) -> PreparedGrid | None:
    """Everything a launch checks before Ray starts: the command line's numbers, the search
    space (read here, handed to the training stage by value), the data, the pretrained files
    and the experiment folder. None for a dry run or an estimate.

    Args:
        opts: the launch's options, as the command line gave them.
    """
    opts.validate()  # the command line's numbers first: no YAML is read on a bad one
    full, grid = resolve_grid(opts.grid, steps=opts.steps, epochs=opts.epochs, size=opts.size, only=opts.only,
                              precision=opts.precision, compile=opts.compile)
    return prepare_grid(opts, full, grid)


def pretrain_foundation(stage: FoundationStage, opts: LaunchOptions, out) -> Path:
    """The first stage when `foundation: auto` found neither RETFound nor a fundus MAE: our MAE
    on the grid's own train split (Ray Train; TensorBoard under the experiment), kept in the
    weights cache keyed by the dataset, so the next grid on the same data reuses it."""
    from ablate.data.shards import read_manifest
    from ablate.fm.pretrain import FM_RUN, pretrain
    from ablate.runtime import RunOptions

    n_train = read_manifest(stage.data)["counts"]["train"]
    # The MAE's default batch, but never more than the split holds (a worker needs one full batch).
    batch = max(opts.workers, min(FM_RUN.batch_size, n_train) // opts.workers * opts.workers)
    logger.info(f"stage 1 of 2: pretraining our fundus MAE ({opts.fm_steps} steps, batch {batch}) on "
                f"{stage.data}'s train split for {', '.join(stage.combinations)} -> {stage.out_file}")
    run = RunOptions(steps=opts.fm_steps, batch_size=batch, lr=FM_RUN.lr, workers=opts.workers,
                     address=opts.address, gpus_per_worker=opts.gpus_per_worker, max_failures=opts.max_failures,
                     tb_dir=None if storage.is_uri(out) else Path(ExperimentLayout(out).tensorboard_run(f"stage-{stage.out_file.stem}")))
    result = pretrain(stage.data, stage.out_file, run)
    logger.info(f"stage 1 of 2 done: {result.out_file} (last fm/loss {result.loss:.4f}); stage 2 of 2: the grid")
    return result.out_file


def launch(opts: LaunchOptions) -> Path | str | None:
    """Returns the experiment folder (a Path), or its URI (a str) for --out on object storage;
    None for a dry run."""
    prepared = prepare_launch(opts)  # every check that needs no Ray, before it starts
    if prepared is None:
        return None
    # One writer per experiment: a second launch (or evaluate / report) on this --out is refused.
    with experiment_lock(prepared.out, command_line(), create=True):
        # Again under the lock: another launch may have written the folder between the
        # check in prepare_launch and the lock (it held the lock then, and has let go).
        check_experiment_folder(prepared.out, prepared.full, opts.resume, prepared.data,
                                launching=[trial_key(s) for s in prepared.grid.trials])
        return _launch_locked(prepared, opts)


def tuned_stage_two(prepared: PreparedGrid, opts: LaunchOptions) -> tuple[PreparedGrid, LaunchOptions]:
    """Stage 1 of tuned arms (the searches, on train and val), then what stage 2 trains: the
    grid at the chosen points, resumed where its Tune state exists (a launch killed in stage 2),
    started fresh otherwise (stage 1 wrote grid.json, so this launch may carry --resume)."""
    from ablate.train.grid import verify_test_split
    from ablate.train.search_stage import run_searches

    prepared = run_searches(prepared, opts)
    if opts.search_only:
        return prepared, opts
    if opts.evaluate:
        verify_test_split(prepared.data)  # the first time the launch opens a test shard
    # Tune's saved state of stage 2 (tuner.pkl at the experiment's root; a local folder or a URI alike):
    # a launch killed in stage 1 has none, so its --resume starts stage 2 fresh.
    started = storage.is_file(storage.join(str(prepared.out), TUNER_STATE))
    logger.info(f"stage 2 of 2: {'resuming ' if started else ''}{len(prepared.grid.trials)} trials at the chosen "
                "points, with the search space's seeds")
    return prepared, dataclasses.replace(opts, resume=started)


def _launch_locked(prepared, opts: LaunchOptions) -> Path | str:
    with ray_session(opts.address):  # one Ray for the foundation stage, training and evaluation
        if prepared.stage is not None:
            path = pretrain_foundation(prepared.stage, opts, prepared.out)
            prepared = dataclasses.replace(prepared, files={**prepared.files, "fundus_mae": path})
        if prepared.grid.tune is not None:
            prepared, opts = tuned_stage_two(prepared, opts)
            if opts.search_only:
                logger.info(f"--search-only: stopped after stage 1; the chosen points are in "
                            f"{ExperimentLayout(prepared.out).search_chosen}. Stage 2: ablate launch --grid {opts.grid} "
                            f"--out {prepared.out} --resume")
                return prepared.out
        run = train_grid(prepared, opts)
        table, out = run.table, run.out
        done = (table["status"] == "done").any()
        if opts.evaluate and done:
            from ablate.evaluate.run import EvalOptions, evaluate_experiment
            from ablate.train.results import print_summary

            evaluated = evaluate_experiment(EvalOptions(exp=str(out), segmenter=opts.segmenter,
                                                        gpus_per_task=min(opts.gpus_per_worker, 1.0)))
            print_summary(evaluated)
    if done:
        from ablate.report.publish import write_report

        logger.info(f"report: {write_report(out)}")
    unfinished = int((table["status"] == "incomplete").sum())
    if unfinished:
        logger.warning(f"{unfinished} trial(s) did not finish. Resume with:\n  ablate launch --grid {opts.grid} "
                       f"--out {out}{'' if opts.data is None else f' --data {opts.data}'} --resume")
    return out
