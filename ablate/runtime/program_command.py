"""The one command-line wrapper of the programs with a single Ray Train run (`ablate fm pretrain`,
`ablate segmenter train`), as Ray's `TorchTrainer` specialises one generic trainer.

Each program declares only its own options (data, output, architecture, and its `--steps`,
`--batch-size`, `--lr` with its own defaults) and a parameter `run: RunOptions`. The wrapper adds
the options every such program shares (`--workers`, `--gpus-per-worker`, `--max-failures`, `--tb-dir`, `--seed`,
`--address`, `--verbose`) to the command's signature, turns them and the program's step schedule
into the `RunOptions`, sets where Ray's output goes, and ends the command with the lines that say
where the run's curves, checkpoints and logs are.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import typer

from ablate.runtime.fit import RunOptions, program_run, where_the_run_is

# (name, type, typer option) of every option a one-Train-run program shares, in --help order.
SHARED_OPTIONS: tuple[tuple[str, object, object], ...] = (
    ("workers", int, typer.Option(1, "--workers", help="Ray Train workers (DDP ranks)")),
    ("gpus_per_worker", float, typer.Option(0.0, "--gpus-per-worker")),
    ("max_failures", int, typer.Option(2, "--max-failures",
                                       help="worker-group restarts from the last checkpoint when a worker dies "
                                            "(-1: unlimited)")),
    ("tb_dir", Path | None, typer.Option(None, "--tb-dir",
                                         help="TensorBoard folder (default: <out dir>/tensorboard/<run>)")),
    ("seed", int, typer.Option(0, "--seed")),
    ("address", str | None, typer.Option(None, "--address", help="join a running Ray cluster, e.g. 'auto'")),
    ("verbose", bool, typer.Option(False, "--verbose", help="show Ray's own output here (Ray Data bars, worker logs) "
                                   "instead of only in <train run>/logs/")),
)
# The program's own options the wrapper reads too: its step schedule, with its own defaults.
SCHEDULE = ("steps", "batch_size", "lr")


class FinishedRun(Protocol):
    """What a program's body returns: at least where its run wrote. Read-only properties, so a
    frozen dataclass (PretrainResult, SegmenterTrainResult) satisfies it."""
    @property
    def tb_dir(self) -> Path: ...
    @property
    def run_dir(self) -> Path: ...


def train_program(app: typer.Typer, name: str | None = None) -> Callable[[Callable[..., FinishedRun]], Callable]:
    """Register `body` as the command `name` of `app`, with the shared options added.

    Args:
        app: the program's typer group (`ablate fm`, `ablate segmenter`).
        name: the command's name (default: the body's name).

    The body takes `run: RunOptions` plus its own options (which must include `steps`,
    `batch_size` and `lr`), prints what it made, and returns the run's result (`tb_dir`,
    `run_dir`); the wrapper prints where those are.
    """

    def register(body: Callable[..., FinishedRun]) -> Callable:
        signature = inspect.signature(body, eval_str=True)
        hints = typing.get_type_hints(body)
        own = [p for p in signature.parameters.values() if p.name != "run"]
        missing = [n for n in (*SCHEDULE, "run") if n not in signature.parameters]
        if missing:  # a programming error in a new program, caught when the CLI is imported
            raise TypeError(f"{body.__qualname__}: a Train program's command needs the parameters {missing}")
        shared = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
                  for n, kind, option in SHARED_OPTIONS]

        @functools.wraps(body)
        def command(**given):
            options = {n: given.pop(n) for n, _, _ in SHARED_OPTIONS}
            verbose = options.pop("verbose")
            run = program_run(verbose, **{n: given[n] for n in SCHEDULE}, **options)
            result = body(run=run, **given)
            typer.echo("\n".join(where_the_run_is(result.tb_dir, result.run_dir, verbose)))

        own_kw = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        command.__signature__ = signature.replace(parameters=own_kw + shared)  # type: ignore[attr-defined]
        # typer reads types from the hints: the body's own, and the shared options' types.
        command.__annotations__ = {**{k: v for k, v in hints.items() if k not in ("run", "return")},
                                   **{n: kind for n, kind, _ in SHARED_OPTIONS}}
        del command.__wrapped__  # typer must see the signature above, not the body's
        return app.command(name)(command)

    return register


__all__ = ["SHARED_OPTIONS", "FinishedRun", "RunOptions", "train_program"]
