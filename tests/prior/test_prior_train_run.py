"""The prior's Train run (ablate.prior.loop) trains, checkpoints, and resumes after a killed
worker: the restarted group continues from the last checkpoint's step, not from 0; a
conditional prior the same, learning from its codes' labels and saved with its condition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ablate.specs import PriorSpec


def _config(tmp_path: Path, steps: int) -> dict:
    import dataclasses

    p = PriorSpec(layers=1, heads=2, width=16, steps=steps, batch_size=4, lr=3e-3, log_every=2, checkpoint_every=3)
    return {"prior": dataclasses.asdict(p), "grid": [4, 4], "vocab": 8, "seed": 0, "steps": steps, "batch_size": 4,
            "lr": 3e-3, "warmup_steps": 1, "log_every": 2, "checkpoint_every": 3, "precision": "auto",
            "threads": 1, "tb_dir": str(tmp_path / "tb"), "splits": ["train", "val"]}


CONDITION = {"column": "grade", "values": ["a", "b"], "train_counts": [6, 6]}


@pytest.mark.ray
@pytest.mark.parametrize("condition", [None, CONDITION], ids=["unconditional", "conditional"])
def test_the_prior_resumes_from_its_checkpoint_after_a_killed_worker(ray_local, tmp_path, condition):
    import ray.data
    import torch

    from ablate.prior.prior_file import PRIOR_FILE
    from ablate.runtime import Placement, fit_torch_run

    rng = np.random.default_rng(0)
    codes = {s: ray.data.from_items([{"codes": rng.integers(0, 8, 16).astype(np.int32), "key": i,
                                      **({"label": i % 2} if condition else {})} for i in range(n)])
             for s, n in (("train", 12), ("val", 4))}
    log = tmp_path / "attempts.txt"

    def loop(config):  # a closure: Ray pickles it by value
        import os
        import time

        import ray.train

        import ablate.prior.loop as prior_loop

        first = ray.train.get_checkpoint() is None
        attempt = "fresh" if first else "restored"
        report = prior_loop._report

        def logged_report(model, opt, sched, shape, cfg, step, *rest):  # the steps each attempt checkpoints
            report(model, opt, sched, shape, cfg, step, *rest)
            with open(config["log"], "a") as f:
                f.write(f"{attempt}@{step}\n")
            if first:  # the first checkpoint is written, then the worker dies as a lost node's would
                time.sleep(6)  # the controller polls every 2 s: the checkpoint is registered by now
                os._exit(1)

        prior_loop._report = logged_report
        prior_loop.prior_train_loop(config)

    placement = Placement(workers=1, cpus_per_worker=1.0, gpus_per_worker=0.0, threads_per_worker=1, concurrent=1)
    extra = {} if condition is None else {"condition": condition}
    result = fit_torch_run(loop, {**_config(tmp_path, steps=6), "log": str(log), **extra}, datasets=codes,
                           placement=placement, name="prior-killed", storage_path=str(tmp_path / "train"),
                           max_failures=2)
    # checkpoints every 3 steps: the restarted group trains steps 4-6 only, from the step-3 checkpoint
    assert log.read_text().split() == ["fresh@3", "restored@6"]
    with result.checkpoint.as_directory() as d:
        saved = torch.load(Path(d) / PRIOR_FILE, weights_only=True)
    assert saved["step"] == 6 and np.isfinite(saved["loss"]) and np.isfinite(saved["val_loss"])
    assert saved.get("condition") == condition  # absent from an unconditional prior's file
    assert saved["config"]["n_conditions"] == (0 if condition is None else 2)
    assert result.metrics["step"] == 6 and "prior/val_loss" in result.metrics
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert events, "the prior's TensorBoard scalars were not written"
