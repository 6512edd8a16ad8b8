"""Real fault injection: a killed Train worker, a diverging loss (a killed driver: test_soak.py).

Each test runs `ablate launch` as a separate process (its own Ray instance) so
that processes can be killed like a cluster would lose them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.ray
ABLATE = [sys.executable, "-m", "ablate.cli"]

GRID = """
name: faults
base:
  data: {size: 32, augment: {hflip: true, rotate_deg: 5}}
  model: {preset: tiny}
  train: {steps: STEPS, batch_size: 4, lr: LR, log_every: 2, image_every: 100, val_every: 4,
          val_batches: 1, checkpoint_every: 4}
  losses:
    codebook: {weight: 1.0}
combinations:
  l1: {losses: {l1: {weight: 1.0}}}
COMBO2
seeds: [0]
"""


def _grid(tmp_path: Path, steps: int, two: bool, lr: str = "1.0e-3") -> Path:
    p = tmp_path / "faults.yaml"
    p.write_text(GRID.replace("STEPS", str(steps)).replace("LR", lr)
                 .replace("COMBO2", "  l2: {losses: {l2: {weight: 1.0}}}" if two else ""))
    return p


def _launch(grid: Path, data: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "ABLATE_RAY_TMP": f"/tmp/ablate-ft-{os.getpid()}-{out.name}"}
    log = open(out.parent / f"{out.name}.log", "ab")  # noqa: SIM115 (the launch writes to it for its whole life)
    return subprocess.Popen([*ABLATE, "launch", "--grid", str(grid), "--data", str(data), "--out", str(out),
                             "--no-evaluate", *extra],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _wait(pred, timeout: float, what: str, proc: subprocess.Popen | None = None):
    end = time.time() + timeout
    while time.time() < end:
        value = pred()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"launch exited ({proc.returncode}) before {what}")
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state, past a name with spaces


def _pids_titled(title: str, ancestor: int) -> list[int]:
    """Processes Ray named `ray::<Actor>` (setproctitle, visible in /proc) that descend from
    `ancestor` (the launch under test): never another Ray's workers on the same machine."""
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
                pid = _parent(pid)
            if pid == ancestor:
                pids.append(int(d.name))
    return pids


def _registered_checkpoints(out: Path) -> list[str]:
    """Checkpoints Ray Train has committed (a folder alone may still be mid-report)."""
    names = []
    for snap in out.glob("train/*/checkpoint_manager_snapshot.json"):
        try:
            names += [c["checkpoint_dir_name"] for c in json.loads(snap.read_text())["checkpoint_results"]]
        except (ValueError, KeyError):
            continue  # being rewritten
    return names


def _finished_trial_dirs(out: Path) -> list[Path]:
    """Trials Tune has saved as TERMINATED in its experiment state (what a restore reads)."""
    states = sorted(out.glob("experiment_state-*.json"))
    if not states:
        return []
    try:
        trials = [json.loads(t[0]) for t in json.loads(states[-1].read_text())["trial_data"]]
    except (ValueError, KeyError, IndexError):
        return []  # being rewritten
    return [out / t["relative_logdir"] for t in trials if t.get("status") == "TERMINATED"]


@pytest.mark.fault
def test_killed_train_worker_recovers_from_its_checkpoint(drive32, tmp_path):
    out = tmp_path / "exp"
    proc = _launch(_grid(tmp_path, steps=24, two=False), drive32, out, "--max-failures", "2")
    try:
        _wait(lambda: _registered_checkpoints(out), 600, "a first committed checkpoint", proc)
        (victim,) = _wait(lambda: _pids_titled("ray::RayTrainWorker", proc.pid), 30, "the Train worker process", proc)
        killed_at = time.time()
        os.kill(victim, signal.SIGKILL)
        assert proc.wait(timeout=300) == 0, (out.parent / "exp.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == 1 and df.loc[0, "status"] == "done" and df.loc[0, "steps"] == 24
    # The restarted worker group continued from the checkpoint's step, not from 0.
    assert df.loc[0, "resumed_from_step"] > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard" / df.loc[0, "trial"]))
    acc.Reload()
    (resumed,) = acc.Scalars("train/resumed_from_step")
    assert resumed.value > 0 and resumed.step == resumed.value
    print(f"recovery after worker kill: resumed at step {resumed.value:.0f}, "
          f"{time.time() - killed_at:.1f} s from kill to the end of the grid")


@pytest.mark.fault
def test_diverging_trial_stops_with_its_reason(drive32, tmp_path):
    out = tmp_path / "exp3"
    proc = _launch(_grid(tmp_path, steps=40, two=False, lr="1.0e+8"), drive32, out)
    assert proc.wait(timeout=300) == 0, (out.parent / "exp3.log").read_text()[-3000:]
    df = pd.read_parquet(out / "results.parquet")
    assert df.loc[0, "status"] == "diverged"
    assert "non-finite loss at step" in df.loc[0, "error"]
    assert df.loc[0, "steps"] < 40
