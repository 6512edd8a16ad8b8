"""`ablate launch` of the two-trial grid with stdout a pipe (its own file: it starts Ray): plain short lines, Ray's output in EXP/logs/."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.helpers import REPO as ROOT
from tests.helpers.console import ESCAPE_CODES


@pytest.mark.ray
def test_two_trial_grid_off_a_terminal_is_plain_short_and_ray_goes_to_exp_logs(drive32, tiny_grid, tmp_path):
    """`ablate launch` with stdout a pipe: one line per trial event, no escape codes, under
    5 kB; Ray's output (raylet, workers, the driver's `ray` loggers) in EXP/logs/."""
    out = tmp_path / "exp"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           # Short: Ray's socket paths under it must stay within 107 bytes.
           "ABLATE_RAY_TMP": tempfile.mkdtemp(prefix="ar-", dir="/tmp")}
    try:
        run = subprocess.run([sys.executable, "-m", "ablate.cli", "launch", "--grid", str(tiny_grid), "--data",
                              str(drive32), "--out", str(out), "--no-evaluate"], check=False,
                             capture_output=True, text=True, env=env, timeout=600)
    finally:
        shutil.rmtree(env["ABLATE_RAY_TMP"], ignore_errors=True)
    printed = run.stdout + run.stderr
    assert run.returncode == 0, printed[-3000:]
    assert not ESCAPE_CODES.search(printed), printed
    assert len(printed.encode()) < 5000, printed
    for key in ("l1-s0", "l2-s0"):
        assert re.search(rf"^\d\d:\d\d:\d\d {key} started", run.stdout, re.MULTILINE), run.stdout
        assert re.search(rf"^\d\d:\d\d:\d\d {key} done: 6 steps in ", run.stdout, re.MULTILINE), run.stdout
    assert "Trial status" not in printed and "Started a local Ray instance" not in printed  # Tune's and Ray's own
    logs = out / "logs"
    assert f"Ray's output (Tune, Ray Data, raylet, workers): {logs}/" in run.stdout
    assert "Started a local Ray instance" in (logs / "driver.log").read_text()
    ray_files = {p.name for p in (logs / "ray").iterdir()}
    assert "raylet.out" in ray_files and any(n.startswith("worker-") for n in ray_files), sorted(ray_files)
    # What used to reach the terminal: the Train workers' checkpoint lines, in the workers' logs.
    assert "Checkpoint successfully created" not in printed
    workers = (logs / "ray").glob("worker-*")
    assert any("Checkpoint successfully created" in p.read_text(errors="replace") for p in workers)
