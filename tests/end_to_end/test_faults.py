"""Real fault injection: a killed Train worker, a diverging loss (a killed driver: test_soak.py).

Each test runs `ablate launch` as a separate process (its own Ray instance) so
that processes can be killed like a cluster would lose them.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.launch_processes import (
    launch_in_background,
    pids_titled,
    registered_checkpoints,
    wait_for,
)

pytestmark = pytest.mark.ray

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


@pytest.mark.fault
def test_killed_train_worker_recovers_from_its_checkpoint(drive32, tmp_path):
    out = tmp_path / "exp"
    proc = launch_in_background(_grid(tmp_path, steps=24, two=False), drive32, out, "--max-failures", "2")
    try:
        wait_for(lambda: registered_checkpoints(out), 600, "a first committed checkpoint", proc)
        (victim,) = wait_for(lambda: pids_titled("ray::RayTrainWorker", proc.pid), 30, "the Train worker process", proc)
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
    proc = launch_in_background(_grid(tmp_path, steps=40, two=False, lr="1.0e+8"), drive32, out)
    assert proc.wait(timeout=300) == 0, (out.parent / "exp3.log").read_text()[-3000:]
    df = pd.read_parquet(out / "results.parquet")
    assert df.loc[0, "status"] == "diverged"
    assert "non-finite loss at step" in df.loc[0, "error"]
    assert df.loc[0, "steps"] < 40
