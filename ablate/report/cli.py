"""`ablate report EXP` and `ablate tensorboard EXP`, as plain typer functions for
ablate/cli.py to register (`app.command()(report)`, `app.command()(tensorboard)`);
`write_report` is what `ablate launch` calls when a grid ends."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import typer

from ablate.report.render import N_IMAGES, write_report  # noqa: F401  (re-exported for ablate launch)

DEFAULT_PORT = 6006


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def report(
    exp: Path = typer.Argument(..., help="experiment folder written by `ablate launch` (and `ablate evaluate`)"),
    images: int = typer.Option(N_IMAGES, "--images", help="test images in the image grid (0: no grid, no model loading)"),
    hparams: bool = typer.Option(True, "--hparams/--no-hparams", help="also write TensorBoard HParams summaries"),
) -> None:
    """Write EXP/report/index.html (self-contained) and report.md: per-metric means and 95% CIs,
    paired Wilcoxon tests against the baseline, a ranking, the paper's two questions, an image grid."""
    from ablate.report.collect import ReportError

    try:
        path = write_report(exp, n_images=images, hparams=hparams)
    except ReportError as e:
        _fail(str(e))
    typer.echo(f"report: {path}")
    typer.echo(f"tables: {path.with_name('report.md')}")


def tensorboard_command(exp: Path, port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> list[str]:
    logdir = Path(exp).expanduser().resolve() / "tensorboard"
    exe = Path(sys.executable).with_name("tensorboard")
    base = [str(exe)] if exe.is_file() else ([shutil.which("tensorboard")] if shutil.which("tensorboard")
                                               else [sys.executable, "-m", "tensorboard.main"])
    return base + ["--logdir", str(logdir), "--host", host, "--port", str(port)]


def tensorboard(
    exp: Path = typer.Argument(..., help="experiment folder"),
    port: int = typer.Option(DEFAULT_PORT, "--port"),
    host: str = typer.Option("127.0.0.1", "--host", help="interface to bind; the default is reachable from this machine only"),
    print_only: bool = typer.Option(False, "--print-only", help="print the command (and an SSH tunnel for a remote machine) instead of running it"),
) -> None:
    """Start TensorBoard on EXP/tensorboard (training curves, images, and the HParams tab after `ablate report`)."""
    logdir = Path(exp).expanduser().resolve() / "tensorboard"
    if not logdir.is_dir():
        _fail(f"{logdir}: no TensorBoard logs (is {exp} an experiment folder?)")
    cmd = tensorboard_command(exp, port, host)
    line = shlex.join(cmd)
    tunnel = f"ssh -N -L {port}:127.0.0.1:{port} USER@THIS_MACHINE   # then open http://localhost:{port}"
    if print_only:
        typer.echo(line)
        typer.echo(f"from another computer: {tunnel}")
        return
    if not any((p / "hparams").is_dir() for p in logdir.iterdir() if p.is_dir()):
        typer.echo(f"note: no HParams summaries yet; `ablate report {exp}` writes them")
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(f"warning: binding {host}: TensorBoard has no authentication; anyone who can reach this "
                    f"port can read the logs", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"{line}\nopen http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port} "
               f"(remote machine: {tunnel}); Ctrl-C stops it")
    try:
        rc = subprocess.call(cmd)
    except KeyboardInterrupt:
        rc = 0
    raise typer.Exit(rc)
