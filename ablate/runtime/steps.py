"""The step-based loop of a program's Train worker (`fm pretrain`, `segmenter train`):
train for a number of optimizer steps, as many passes over the data as that takes,
logging, drawing, validating and checkpointing on a schedule. The programs give what
differs (the forward pass, the pictures, the validation, the checkpoint's content).

The ablation grid's loop (`train/loop.py`) is richer (adversarial step, divergence
stop, epochs, start-up timing) and keeps its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ablate.runtime.distributed import mean_over_workers


@dataclass
class StepLoop:
    """Args:
        steps: optimizer steps to reach.
        log_every: steps between logged scalars (means over workers).
        image_every: steps between pictures (rank 0).
        checkpoint_every: steps between checkpoints (and at the end).
        world: Train workers (for the summed throughput).
        prefix: scalar names: `<prefix>/loss` (must stay finite), `<prefix>/lr`.
        rate_key: the throughput scalar (items per second over all workers).
        rank: this worker's rank; rank 0 writes TensorBoard into `tb_dir`.
        tb_dir: the TensorBoard folder (local or URI).
        val_every: steps between validations (and at the end); None = never.
    """

    steps: int
    log_every: int
    image_every: int
    checkpoint_every: int
    world: int
    prefix: str
    rank: int
    tb_dir: str
    rate_key: str = "perf/images_per_s"
    val_every: int | None = None

    def run(self, batches: Callable[[int], Iterable], forward: Callable[[Any, int], tuple], *, opt, sched,
            report: Callable[[int, int, dict, bool], None], step: int = 0, epoch: int = 0, last: dict | None = None,
            draw: Callable[[Any, int, Any], None] | None = None, validate: Callable[[], dict] | None = None) -> dict:
        """Train from `step` to `self.steps`; returns the last logged values.

        Args:
            batches: epoch -> this worker's batches of that pass over the data.
            forward: (batch, step) -> (loss, logs {name: tensor}, items in the batch, what `draw` needs).
            opt, sched: the optimizer and its per-step schedule (the loop steps both).
            report: (step, epoch, last values, final) -> reports to Ray Train (with a checkpoint).
            step, epoch, last: where a resumed run starts.
            draw: (TensorBoard writer, step, what forward returned) -> pictures, on rank 0.
            validate: () -> validation scalars (means over workers).
        """
        from ablate.runtime.tensorboard import TrialWriter

        writer = TrialWriter(self.tb_dir) if self.rank == 0 else None
        last = dict(last or {})
        seen, tic, final_reported = 0, time.perf_counter(), False
        while step < self.steps:
            n_batches = 0
            for batch in batches(epoch):
                loss, logs, items, view = forward(batch, step)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                lr_now = opt.param_groups[0]["lr"]
                opt.step()
                sched.step()
                step += 1
                n_batches += 1
                seen += items
                done = step >= self.steps
                if step % self.log_every == 0 or done:
                    scalars = mean_over_workers(logs)
                    if not math.isfinite(scalars[f"{self.prefix}/loss"]):
                        raise FloatingPointError(f"non-finite {self.prefix} loss at step {step}: {scalars}")
                    scalars[f"{self.prefix}/lr"] = lr_now
                    scalars[self.rate_key] = seen * self.world / max(time.perf_counter() - tic, 1e-9)
                    seen, tic = 0, time.perf_counter()
                    last.update(scalars)
                    if writer:
                        writer.scalars(scalars, step)
                if draw and writer and (step % self.image_every == 0 or done):
                    draw(writer.writer, step, view)
                if validate and self.val_every and (step % self.val_every == 0 or done):
                    val = validate()
                    last.update(val)
                    if writer:
                        writer.scalars(val, step)
                if step % self.checkpoint_every == 0 or done:
                    report(step, epoch, last, done)
                    final_reported = done
                if done:
                    break
            if n_batches == 0:
                raise RuntimeError(f"a pass over the data gave this worker no batch: fewer items than the "
                                   f"{self.world} workers x batch size need")
            epoch += 1
        if not final_reported:  # resumed from a run that had already finished: report its state again
            report(step, epoch, last, True)
        if writer:
            writer.close()
        return last


def resume(model, opt, sched, model_state: dict, train_state: dict) -> tuple[int, int]:
    """Load a checkpoint's states into a (possibly DDP-wrapped) model, its optimizer and its
    schedule; returns (step, epoch) to continue from."""
    from ablate.runtime.distributed import unwrap

    unwrap(model).load_state_dict(model_state["model"])
    opt.load_state_dict(train_state["optimizer"])
    sched.load_state_dict(train_state["scheduler"])
    return int(train_state["step"]), int(train_state["epoch"])
