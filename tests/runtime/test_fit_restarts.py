"""A one-Train-run program (ablate.runtime.fit.fit_standalone) survives a worker that dies: Ray
Train restarts it from its last checkpoint (`max_failures`); a ConfigError is tried once."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.runtime.fit import RunFolders, RunOptions, fit_standalone
from ablate.specs import ConfigError


def _folders(tmp_path: Path, name: str) -> RunFolders:
    return RunFolders(name=name, tb_dir=tmp_path / "tb", storage=tmp_path / "train")


def _attempts(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_max_failures_is_checked_before_ray_starts():
    RunOptions(steps=2, batch_size=1, lr=1e-3, max_failures=-1).check()
    for bad in (-2, 1.5, True):
        with pytest.raises(ValueError, match="max_failures"):
            RunOptions(steps=2, batch_size=1, lr=1e-3, max_failures=bad).check()  # type: ignore[arg-type]


@pytest.mark.ray
def test_a_worker_that_dies_is_restarted_from_its_last_checkpoint(ray_local, tmp_path):
    log = tmp_path / "attempts.txt"

    def loop(config):  # a closure: Ray pickles it by value
        import os
        import tempfile
        import time

        import ray.train

        ckpt = ray.train.get_checkpoint()
        with open(config["log"], "a") as f:
            f.write(("fresh" if ckpt is None else "restored") + "\n")
        if ckpt is None:  # first attempt: one checkpoint, then the process is killed as a lost node's would be
            with tempfile.TemporaryDirectory() as d:
                Path(d, "step").write_text("1")
                ray.train.report({"step": 1}, checkpoint=ray.train.Checkpoint.from_directory(d))
            time.sleep(6)  # the controller polls every 2 s: it has registered the checkpoint by now
            os._exit(1)
        with ckpt.as_directory() as d:
            step = int(Path(d, "step").read_text())
        with tempfile.TemporaryDirectory() as d:
            Path(d, "step").write_text(str(step + 1))
            ray.train.report({"step": step + 1}, checkpoint=ray.train.Checkpoint.from_directory(d))

    run = RunOptions(steps=2, batch_size=1, lr=1e-3, max_failures=2)
    result = fit_standalone(loop, {"log": str(log)}, dict, folders=_folders(tmp_path, "dies-once"), run=run)
    assert _attempts(log) == ["fresh", "restored"]
    with result.checkpoint.as_directory() as d:
        assert Path(d, "step").read_text() == "2"  # the restart continued from step 1


@pytest.mark.ray
def test_a_config_error_in_the_loop_is_raised_once_not_retried(ray_local, tmp_path):
    log = tmp_path / "attempts.txt"

    def loop(config):
        with open(config["log"], "a") as f:
            f.write("try\n")
        raise ConfigError("grid.yaml: key 'losses.l1.weight' must be > 0")

    run = RunOptions(steps=2, batch_size=1, lr=1e-3, max_failures=2)
    with pytest.raises(ConfigError, match="losses.l1.weight"):
        fit_standalone(loop, {"log": str(log)}, dict, folders=_folders(tmp_path, "bad-config"), run=run)
    assert _attempts(log) == ["try"]
