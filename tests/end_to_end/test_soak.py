"""The soak test of issue 20: a 4-trial grid where a Train worker and then the driver are
killed at random (seeded) moments, resumed with --resume until it is done. Nothing may be
lost or doubled: every trial finished once in results.parquet, every checkpoint Ray Train
committed verifies against its record and loads, and the trials that had finished when the
driver died are not trained again (no new reports or checkpoints; this replaces the older
killed-driver test of test_faults.py, whose assertions it carries)."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.launch_processes import (
    finished_trial_dirs,
    launch_in_background,
    pids_titled,
    registered_checkpoints,
    wait_for,
)

pytestmark = pytest.mark.ray
SEED = 20  # the kill moments; printed, so a failure can be replayed
STEPS = 6

GRID = f"""
name: soak
base:
  data: {{size: 32}}
  model: {{preset: tiny}}
  train: {{steps: {STEPS}, batch_size: 4, lr: 1.0e-3, log_every: 2, image_every: 100, val_every: 4,
          val_batches: 1, checkpoint_every: 2}}
  losses:
    codebook: {{weight: 1.0}}
combinations:
  l1: {{losses: {{l1: {{weight: 1.0}}}}}}
  l2: {{losses: {{l2: {{weight: 1.0}}}}}}
seeds: [0, 1]
"""


@pytest.mark.fault
def test_soak_worker_then_driver_killed_then_resumed_loses_nothing(drive32, tmp_path):
    from ablate.models.checkpoint import read_checkpoint, verify_checkpoint

    rng = random.Random(SEED)
    grid = tmp_path / "soak.yaml"
    grid.write_text(GRID)
    out = tmp_path / "soak"
    t0 = time.time()
    proc = launch_in_background(grid, drive32, out, "--max-failures", "3")
    log = out.parent / "soak.log"
    try:
        wait_for(lambda: registered_checkpoints(out), 240, "a first committed checkpoint", proc)
        time.sleep(rng.uniform(0.0, 3.0))
        victims = wait_for(lambda: pids_titled("ray::RayTrainWorker", proc.pid), 60, "a Train worker", proc)
        os.kill(rng.choice(sorted(victims)), signal.SIGKILL)
        wait_for(lambda: finished_trial_dirs(out), 240, "a first finished trial", proc)
        time.sleep(rng.uniform(0.0, 4.0))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
        proc.wait()
    first_done = proc.returncode == 0  # the grid may have finished before the driver kill
    # What Tune had saved as finished when the driver died must not be trained again.
    finished = {d: ((d / "result.json").read_text(), sorted(p.name for p in out.glob(f"train/{d.name}/checkpoint_*")))
                for d in finished_trial_dirs(out)}
    assert finished, "the driver was killed after a trial had finished"
    runs = 1
    while not first_done or runs == 1:
        resumed = launch_in_background(grid, drive32, out, "--resume", "--max-failures", "3")
        runs += 1
        rc = resumed.wait(timeout=300)
        if rc == 0 or runs >= 4:
            assert rc == 0, log.read_text()[-4000:]
            break
    wall = time.time() - t0
    print(f"soak (seed {SEED}): {runs} launches, {wall:.0f} s")

    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == 4 and not df.duplicated(["combination", "seed"]).any() and df["trial"].is_unique, df
    assert (df["status"] == "done").all() and (df["steps"] == STEPS).all(), df[["trial", "status", "steps"]]
    assert df["checkpoint"].notna().all()
    committed = [p for name in registered_checkpoints(out) for p in out.glob(f"train/*/{name}")]
    assert len(committed) >= 4
    for folder in {*committed, *(Path(c) for c in df["checkpoint"])}:
        assert verify_checkpoint(folder) == "verified", folder
        assert read_checkpoint(folder)["step"] > 0
    for d, (result, ckpts) in finished.items():  # no new reports, no new checkpoints
        assert (d / "result.json").read_text() == result, d
        assert sorted(p.name for p in out.glob(f"train/{d.name}/checkpoint_*")) == ckpts, d
    # The driver's kill left its lock file behind; the resume took it over, saying so.
    assert "taking over a stale lock" in log.read_text() and not (out / ".ablate.lock").exists()
