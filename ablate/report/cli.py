"""`ablate report EXP` and `ablate tensorboard EXP`, as plain typer functions for
ablate/cli.py to register (`app.command()(report)`, `app.command()(tensorboard)`)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import typer

from ablate.evaluate.samples import N_IMAGES
from ablate.experiment_layout import ExperimentLayout
from ablate.ui.console import fail

DEFAULT_PORT = 6006


def report(
    exp: str = typer.Argument(..., help="experiment folder or URI (s3://…) written by `ablate launch` (and `ablate evaluate`)"),
    images: int = typer.Option(N_IMAGES, "--images", help="test images in the image grid (0: no grid, no model loading)"),
    hparams: bool = typer.Option(True, "--hparams/--no-hparams", help="also write TensorBoard HParams summaries"),
) -> None:
    """Write EXP/report/index.html (self-contained) and report.md: per-metric means and 95% CIs over seeds,
    Welch t tests over seeds against the baseline (Holm-corrected), a ranking, the paper's two questions,
    an image grid, and a section per other dataset `ablate evaluate --data` scored."""
    from ablate.lock import command_line, experiment_lock
    from ablate.report.publish import write_report

    with experiment_lock(exp, command_line()):  # writes report/ and the HParams summaries
        path = write_report(exp, n_images=images, hparams=hparams)
    typer.echo(f"report: {path}")
    typer.echo(f"tables: {str(path).rsplit('/', 1)[0]}/report.md")
    typer.echo(f"next: ablate tensorboard {exp}   (training curves; the HParams tab from this report)")


def tensorboard_command(logdir: Path, port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> list[str]:
    exe = Path(sys.executable).with_name("tensorboard")
    on_path = shutil.which("tensorboard")
    base = [str(exe)] if exe.is_file() else ([on_path] if on_path else [sys.executable, "-m", "tensorboard.main"])
    return base + ["--logdir", str(logdir), "--host", host, "--port", str(port)]


def mirror_folder(uri: str) -> Path:
    """Where `ablate tensorboard URI` keeps its local copy of URI/tensorboard (one folder per URI)."""
    from ablate.cache import cache_root

    return cache_root() / "tensorboard-mirror" / re.sub(r"[^A-Za-z0-9._-]+", "_", uri)


def tensorboard(
    exp: str = typer.Argument(..., help="experiment folder, or its URI (s3://…): then a local mirror is served"),
    port: int = typer.Option(DEFAULT_PORT, "--port"),
    host: str = typer.Option("127.0.0.1", "--host", help="interface to bind; the default is reachable from this machine only"),
    print_only: bool = typer.Option(False, "--print-only", help="print the command (and an SSH tunnel for a remote machine) instead of running it"),
    sync_every: float = typer.Option(30.0, "--sync-every", help="for a URI: seconds between re-syncs of the mirror"),
) -> None:
    """Start TensorBoard on EXP/tensorboard (training curves, images, and the HParams tab after `ablate report`).
    For an experiment on object storage, EXP/tensorboard is copied to a local mirror
    ($ABLATE_CACHE/tensorboard-mirror/, default ~/.cache/ablate) and re-synced every --sync-every seconds while TensorBoard runs."""
    from ablate import storage

    remote = ExperimentLayout(exp).tensorboard if storage.is_uri(exp) else None
    if remote:
        from ablate.runtime import mirror_logs

        logdir = mirror_folder(remote)
        mirror_logs(remote, logdir)  # a StorageError or InputMissing names the URI
        if not logdir.is_dir():
            fail(f"{remote}: no TensorBoard logs (is {exp} an experiment, and has a trial started?)")
        typer.echo(f"mirror of {remote}: {logdir}")
    else:
        logdir = Path(ExperimentLayout(Path(exp).expanduser().resolve()).tensorboard)
        if not logdir.is_dir():
            fail(f"{logdir}: no TensorBoard logs (is {exp} an experiment folder?)")
    cmd = tensorboard_command(logdir, port, host)
    line = shlex.join(cmd)
    tunnel = f"ssh -N -L {port}:127.0.0.1:{port} USER@THIS_MACHINE   # then open http://localhost:{port}"
    if print_only:
        typer.echo(line)
        if remote:
            typer.echo(f"(a snapshot: without --print-only the mirror is re-synced every {sync_every:g} s)")
        typer.echo(f"from another computer: {tunnel}")
        return
    if not any((p / "hparams").is_dir() for p in logdir.iterdir() if p.is_dir()):
        typer.echo(f"note: no HParams summaries yet; `ablate report {exp}` writes them")
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(f"warning: binding {host}: TensorBoard has no authentication; anyone who can reach this "
                    f"port can read the logs", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"{line}\nopen http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port} "
               f"(remote machine: {tunnel}); Ctrl-C stops it")

    def resync() -> None:
        try:
            mirror_logs(remote, logdir)
        except (OSError, ValueError) as e:  # a network blip must not stop TensorBoard; said, not hidden
            typer.secho(f"warning: re-sync of {remote} failed ({e}); retrying in {sync_every:g} s",
                        fg=typer.colors.YELLOW, err=True)

    raise typer.Exit(run_child(cmd, resync if remote else None, sync_every))


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _stop_with_parent(parent: int):
    """For the child, before it execs: on Linux the kernel sends it SIGTERM when `ablate
    tensorboard` dies, `kill -9` included, which no signal handler of ours can see. If the
    parent died before this ran, the child stops at once. Elsewhere nothing (the handlers
    below still cover SIGTERM, SIGHUP and Ctrl-C)."""
    if not sys.platform.startswith("linux"):
        return None

    def arm() -> None:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return arm



class _Stopped(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def run_child(cmd: list[str], tick=None, every: float = 30.0, grace_s: float = 10.0) -> int:
    """Run `cmd` (TensorBoard) until it exits, calling `tick` every `every` seconds; on
    SIGTERM, SIGHUP or SIGINT stop it (terminate, then kill after `grace_s`) and return
    (0 for Ctrl-C, 128 + the signal otherwise). Without this a `kill` of `ablate tensorboard`
    left TensorBoard running and listening (issue 20, finding 8)."""
    def stop(signum, _frame):
        raise _Stopped(signum)

    # PR_SET_PDEATHSIG exists only in the child; this runs on the main thread (signal.signal below needs it).
    proc = subprocess.Popen(cmd, preexec_fn=_stop_with_parent(os.getpid()))  # noqa: PLW1509
    previous = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    try:
        while True:
            try:
                return proc.wait(timeout=every if tick else None)
            except subprocess.TimeoutExpired:
                tick()
    except _Stopped as e:
        return 0 if e.signum == signal.SIGINT else 128 + e.signum
    except KeyboardInterrupt:  # a SIGINT that arrived before our handler
        return 0
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if proc.poll() is None:  # stopped by a signal or any error: never leave it behind
            proc.terminate()
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
