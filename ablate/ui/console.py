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
