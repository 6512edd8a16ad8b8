"""Tuned arms end to end (issue 29): `ablate launch` of a search space with `tune:`, run as a
separate process and killed as a cluster would lose it, once in each stage.

One chain, to keep Ray start-ups few: stage 1 (--search-only) killed during its first trial
and resumed, with the test split's shards moved out of the dataset the whole time (stage 1
must not need them); then stage 2 killed during its first trial and resumed; then the report.
The search's bad region (a learning rate of 1e-9 against the as-written 1e-3) is pruned by
ASHA at its first rung.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.launch_processes import ABLATE_COMMAND, launch_in_background, registered_checkpoints, wait_for

pytestmark = pytest.mark.ray

SEARCH_SEED = 5
GRID = f"""
name: tuned
base:
  data: {{size: 32, augment: {{hflip: true, rotate_deg: 5}}}}
  model: {{preset: tiny}}
  train: {{steps: 12, batch_size: 4, lr: 1.0e-3, log_every: 3, image_every: 100, val_every: 6,
          val_batches: 1, checkpoint_every: 6}}
  losses:
    codebook: {{weight: 1.0}}
    l1: {{weight: 1.0}}
combinations:
  l1: {{}}
seeds: [0, 1]
tune:
  objective: val/psnr
  budget: 3
  algorithm: random
  scheduler: asha
  seed: {SEARCH_SEED}
  grace_steps: 6
  space:
    l1:
      train.lr: {{choice: [1.0e-9]}}
"""


def _run(grid: Path, data: Path, out: Path, *extra: str) -> None:
    """`ablate launch --no-evaluate` to its end, in its own process and Ray."""
    env = {**os.environ, "ABLATE_RAY_TMP": f"/tmp/ablate-tuned-{os.getpid()}"}
    done = subprocess.run([*ABLATE_COMMAND, "launch", "--grid", str(grid), "--data", str(data), "--out", str(out),
                           "--no-evaluate", *extra], check=False, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]


def _kill_after_checkpoint(grid: Path, data: Path, out: Path, where: Path, *extra: str) -> None:
    """Launch in the background, SIGKILL its whole process group (driver, Ray, workers) once a
    trial under `where` has committed its first checkpoint."""
    proc = launch_in_background(grid, data, out, *extra)
    try:
        wait_for(lambda: registered_checkpoints(where), 600, f"a committed checkpoint under {where}", proc)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{(out.parent / f'{out.name}.log').read_text(errors='replace')[-4000:]}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)


@pytest.mark.fault
def test_tuned_arms_killed_in_each_stage_resume_prune_and_keep_the_test_split_sealed(drive32, tmp_path):
    from ablate.data.shards import shard_paths

    data = tmp_path / "data"
    shutil.copytree(drive32, data)  # the session's dataset stays whole for other tests
    grid = tmp_path / "tuned.yaml"
    grid.write_text(GRID)
    out = tmp_path / "exp"

    # Stage 1 with the test shards gone: any read of the test split would fail the launch.
    test_shards = [Path(p) for p in shard_paths(data, "test", verify=False)]
    sealed = tmp_path / "sealed"
    sealed.mkdir()
    for p in test_shards:
        shutil.move(p, sealed / p.name)

    _kill_after_checkpoint(grid, data, out, out / "search" / "l1", "--search-only")
    assert not (out / "search" / "chosen.json").exists()  # killed inside the search
    _run(grid, data, out, "--search-only", "--resume")

    chosen = json.loads((out / "search" / "chosen.json").read_text())
    assert chosen["chosen"]["l1"]["point"] == {"train.lr": 1.0e-3}  # the as-written point beat lr 1e-9
    trials = pd.read_parquet(out / "search" / "trials.parquet").sort_values("order")
    assert len(trials) == 3 and list(trials["order"]) == [0, 1, 2]
    assert list(trials["default"]) == [True, False, False]
    # ASHA stopped the bad region at its first rung (step 6 of 12); the default ran to the end.
    assert list(trials["status"]) == ["done", "pruned", "pruned"]
    assert list(trials["steps"]) == [12, 6, 6]
    assert list(trials["param.train.lr"]) == [1.0e-3, 1.0e-9, 1.0e-9]
    assert (trials["objective"].iloc[1:] < trials["objective"].iloc[0]).all()
    assert set(trials["seed"]) == {SEARCH_SEED}
    assert not (out / "results.parquet").exists()  # --search-only: no stage 2
    assert not any(p.exists() for p in test_shards)  # stage 1 ran to its end without them

    for p in test_shards:  # stage 2 evaluates on test: the shards come back
        shutil.move(sealed / p.name, p)
    _kill_after_checkpoint(grid, data, out, out, "--resume")  # stage 2 of a --search-only run: --resume
    _run(grid, data, out, "--resume")

    results = pd.read_parquet(out / "results.parquet")
    assert sorted(results["seed"]) == [0, 1] and (results["status"] == "done").all()
    assert not set(results["seed"]) & set(trials["seed"])  # stage 2's seeds: none was searched with
    assert (results["config.train.lr"] == 1.0e-3).all()  # retrained at the chosen point
    assert (results["steps"] == 12).all()
    assert (results["resumed_from_step"].fillna(0) > 0).any()  # the killed trial went on from its checkpoint

    from ablate.report.publish import write_report

    write_report(out)
    md = (out / "report" / "report.md").read_text()
    section = md.split("## Tuning", 1)[1].split("\n## ", 1)[0]
    assert "The verdicts below are computed on stage-2 trials only" in section
    assert f"search seed {SEARCH_SEED}" in section
    # | combination | search | trials | done | pruned | errored | ...
    row = next(line for line in section.splitlines() if line.startswith("| l1 | ended"))
    assert row.split(" | ")[2:6] == ["3", "1", "2", "0"]
    best = float(row.split(" | ")[6].split(" ")[0])
    assert math.isclose(best, trials["objective"].iloc[0], rel_tol=1e-3)
