"""What every `ablate` command prints the same way."""

from __future__ import annotations

from typing import NoReturn

import typer
from typer.core import TyperGroup

from ablate.errors import AblateError
from ablate.logs import setup_logging


def fail(msg: str) -> NoReturn:
    """Print `error: msg` in red on stderr and exit with status 2 (bad input, nothing run)."""
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


class Commands(TyperGroup):
    """The click group of the `ablate` command (and of `ablate fm` / `ablate segmenter`, which
    their tests invoke alone): `typer.Typer(cls=Commands)`. Before a command runs, the library's
    log lines are routed to the terminal (ablate.logs); a user error (AblateError) raised anywhere
    below is printed by `fail`, one line with exit status 2, the one place that catches it. Any
    other exception keeps its traceback: it is a bug, or a fault no message of ours explains."""

    def invoke(self, ctx):
        setup_logging()
        try:
            return super().invoke(ctx)
        except AblateError as e:
            fail(str(e))


# Options every program with one Train run takes (`fm pretrain`, `segmenter train`),
# declared once; each command still declares its own steps / batch / lr defaults.
WORKERS = typer.Option(1, "--workers", help="Ray Train workers (DDP ranks)")
GPUS_PER_WORKER = typer.Option(0.0, "--gpus-per-worker")
TB_DIR = typer.Option(None, "--tb-dir", help="TensorBoard folder (default: <out dir>/tensorboard/<run>)")
SEED = typer.Option(0, "--seed")
ADDRESS = typer.Option(None, "--address", help="join a running Ray cluster, e.g. 'auto'")
VERBOSE = typer.Option(False, "--verbose", help="show Ray's own output here (Ray Data bars, worker logs) instead of "
                       "only in <train run>/logs/")
