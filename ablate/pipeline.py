"""`ablate launch`, the whole job: train the grid (`train.launch`), evaluate every
finished trial on the test split (`evaluate.run`), write the report (`report.publish`).
The one place that runs the stages in order, so no stage reaches up into a later one."""

from __future__ import annotations

import sys
from pathlib import Path

from ablate.runtime import ray_session
from ablate.train.launch import LaunchOptions, prepare_grid, train_grid

__all__ = ["LaunchOptions", "launch"]


def launch(opts: LaunchOptions) -> Path | str | None:
    """Returns the experiment folder (a Path), or its URI (a str) for --out on object storage;
    None for a dry run."""
    prepared = prepare_grid(opts)  # every check that needs no Ray, before it starts
    if prepared is None:
        return None
    with ray_session(opts.address):  # one Ray for training and evaluation
        run = train_grid(prepared, opts)
        table, out = run.table, run.out
        done = (table["status"] == "done").any()
        if opts.evaluate and done:
            from ablate.evaluate.run import EvalOptions, evaluate_experiment
            from ablate.runtime import print_summary

            evaluated = evaluate_experiment(EvalOptions(exp=str(out), segmenter=opts.segmenter,
                                                        gpus_per_task=min(opts.gpus_per_worker, 1.0)))
            print_summary(evaluated)
    if done:
        from ablate.report.publish import write_report

        print(f"report: {write_report(out)}")
    unfinished = int((table["status"] == "incomplete").sum())
    if unfinished:
        print(f"{unfinished} trial(s) did not finish. Resume with:\n  ablate launch --grid {opts.grid} "
              f"--out {out}{'' if opts.data is None else f' --data {opts.data}'} --resume", file=sys.stderr)
    return out
