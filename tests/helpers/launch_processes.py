"""`ablate launch` run as a separate process (its own Ray instance), and watching it from
outside: for the fault tests (end_to_end/test_faults, test_soak) that kill its processes as
a cluster would lose them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

# The `ablate` command as this interpreter runs it (no installed entry point needed).
ABLATE_COMMAND = [sys.executable, "-m", "ablate.cli"]


def launch_in_background(grid: Path, data: Path, out: Path, *extra: str) -> subprocess.Popen:
    """`ablate launch --no-evaluate` started in its own session (killable as a group), its
    output appended to <out>.log beside `out`, its Ray temp folder its own.

    Args:
        grid: the grid file.
        data: the prepared data folder.
        out: the experiment folder.
        extra: more command-line arguments.
    """
    env = {**os.environ, "ABLATE_RAY_TMP": f"/tmp/ablate-ft-{os.getpid()}-{out.name}"}
    log = open(out.parent / f"{out.name}.log", "ab")  # noqa: SIM115 (the launch writes to it for its whole life)
    return subprocess.Popen([*ABLATE_COMMAND, "launch", "--grid", str(grid), "--data", str(data), "--out", str(out),
                             "--no-evaluate", *extra],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_for(pred, timeout: float, what: str, proc: subprocess.Popen | None = None):
    """pred()'s first truthy value, polled every 0.5 s; AssertionError naming `what` on timeout
    or when `proc` exits first.

    Args:
        pred: the condition, returning a value or something falsy.
        timeout: seconds.
        what: what is awaited, for the error.
        proc: the launch; its exit ends the wait.
    """
    end = time.time() + timeout
    while time.time() < end:
        value = pred()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"launch exited ({proc.returncode}) before {what}")
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def parent_pid(pid: int) -> int:
    """The parent of process `pid` from /proc, 0 when it is gone.

    Args:
        pid: a process id.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state, past a name with spaces


def pids_titled(title: str, ancestor: int) -> list[int]:
    """Processes Ray named `ray::<Actor>` (setproctitle, visible in /proc) that descend from
    `ancestor` (the launch under test): never another Ray's workers on the same machine.

    Args:
        title: the start of the process title, e.g. "ray::RayTrainWorker".
        ancestor: the launch's pid.
    """
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if not (d / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").startswith(title):
                    continue
            except OSError:
                continue
            pid = int(d.name)
            while pid > 1 and pid != ancestor:
                pid = parent_pid(pid)
            if pid == ancestor:
                pids.append(int(d.name))
    return pids


def registered_checkpoints(out: Path) -> list[str]:
    """Checkpoints Ray Train has committed (a folder alone may still be mid-report).

    Args:
        out: the experiment folder.
    """
    names = []
    for snap in out.glob("train/*/checkpoint_manager_snapshot.json"):
        try:
            names += [c["checkpoint_dir_name"] for c in json.loads(snap.read_text())["checkpoint_results"]]
        except (ValueError, KeyError):
            continue  # being rewritten
    return names


def finished_trial_dirs(out: Path) -> list[Path]:
    """Trials Tune has saved as TERMINATED in its experiment state (what a restore reads).

    Args:
        out: the experiment folder.
    """
    states = sorted(out.glob("experiment_state-*.json"))
    if not states:
        return []
    try:
        trials = [json.loads(t[0]) for t in json.loads(states[-1].read_text())["trial_data"]]
    except (ValueError, KeyError, IndexError):
        return []  # being rewritten
    return [out / t["relative_logdir"] for t in trials if t.get("status") == "TERMINATED"]
