"""What every `ablate` command prints the same way."""

from __future__ import annotations

from typing import NoReturn

import typer


def fail(msg: str) -> NoReturn:
    """Print `error: msg` in red on stderr and exit with status 2 (bad input, nothing run)."""
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


# Options every program with one Train run takes (`fm pretrain`, `segmenter train`),
# declared once; each command still declares its own steps / batch / lr defaults.
WORKERS = typer.Option(1, "--workers", help="Ray Train workers (DDP ranks)")
GPUS_PER_WORKER = typer.Option(0.0, "--gpus-per-worker")
TB_DIR = typer.Option(None, "--tb-dir", help="TensorBoard folder (default: <out dir>/tensorboard/<run>)")
SEED = typer.Option(0, "--seed")
ADDRESS = typer.Option(None, "--address", help="join a running Ray cluster, e.g. 'auto'")
VERBOSE = typer.Option(False, "--verbose", help="show Ray's own output here (Ray Data bars, worker logs) instead of "
                       "only in <train run>/logs/")
