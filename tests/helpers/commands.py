"""Running the `ablate` command in this process."""

from __future__ import annotations

from typer.testing import CliRunner


def run_cli(*args: str):
    """`ablate <args>` through typer's CliRunner; returns its Result (exit_code, output).

    Args:
        args: the command line after `ablate`.
    """
    from ablate.cli import app

    return CliRunner().invoke(app, list(args))
