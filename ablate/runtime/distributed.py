"""What every per-worker training loop here needs under Ray Train (AE, fundus MAE,
segmenter): the worker's rank and batch share, values averaged over ranks, and the
checkpoint round trip (restore on start, report with a checkpoint written by rank 0)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

__all__ = ["Worker", "average_gradients", "checkpoint_location", "is_distributed", "mean_over_workers", "report_to_train", "restore_states",
           "restored_location", "start_worker", "unwrap", "worker_context"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def worker_context(threads: int, global_batch: int) -> tuple[int, int, int]:
    """(rank, world size, per-worker batch) of this Train worker; sets torch's thread count."""
    import ray.train

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(threads)
    if global_batch % world:
        raise ValueError(f"batch size {global_batch} is not divisible by {world} workers")
    return rank, world, global_batch // world


@dataclass(frozen=True)
class Worker:
    """Where this Train worker stands: its rank, the group's size, its share of the global
    batch and the device Ray Train gave it."""
    rank: int
    world: int
    per_worker: int
    device: torch.device


def start_worker(config: dict, build: Callable[[], torch.nn.Module]) -> tuple[Worker, torch.nn.Module]:
    """The start the `fm pretrain` and `segmenter train` loops share: threads and rank, the
    same initial weights on every rank, the model wrapped for DDP on this worker's device.

    Args:
        config: the loop's config; reads `threads`, `batch_size` (global) and `seed`.
        build: makes the bare model; called after seeding, so every rank builds the same
            weights (DDP broadcasts rank 0's anyway; seeding keeps a one-worker run equal).
    """
    import ray.train.torch

    rank, world, per_worker = worker_context(config["threads"], config["batch_size"])
    torch.manual_seed(config["seed"])
    model = ray.train.torch.prepare_model(build())
    return Worker(rank, world, per_worker, ray.train.torch.get_device()), model


def mean_over_workers(logs: dict[str, torch.Tensor]) -> dict[str, float]:
    """One host sync for all values; averaged across ranks when distributed."""
    keys = sorted(logs)
    vec = torch.stack([logs[k].detach().float().reshape(()) for k in keys])
    if is_distributed():
        dist.all_reduce(vec, op=dist.ReduceOp.SUM)
        vec /= dist.get_world_size()
    return dict(zip(keys, vec.cpu().tolist()))


def average_gradients(opt: torch.optim.Optimizer) -> None:
    """All-reduce gradients of an optimizer's parameters (discriminators are not
    DDP-wrapped: they run twice per step, real then fake, which DDP does not allow)."""
    if not is_distributed():
        return
    for group in opt.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad /= dist.get_world_size()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)  # DDP's wrapped model (getattr: nn.Module's attributes are untyped)


def restore_states(device, *files: str) -> tuple[dict, ...] | None:
    """The torch files `files` of the checkpoint this worker group was started from (a
    restart, or a resumed run), loaded onto `device`; None on a fresh start."""
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        return tuple(torch.load(Path(d) / f, map_location=device, weights_only=True) for f in files)


def restored_location() -> str | None:
    """Where the checkpoint this worker group was started from lives (a local folder, or a
    URI on object storage), so a loop can verify it and fall back to an earlier one of the
    same run; None on a fresh start."""
    import ray.train

    ckpt = ray.train.get_checkpoint()
    return None if ckpt is None else checkpoint_location(ckpt)


def checkpoint_location(checkpoint) -> str:
    """A Ray Train checkpoint's folder as a local path or a URI (s3://, gs://), which
    `storage` and `models.checkpoint` read on any node."""
    kind = checkpoint.filesystem.type_name
    return checkpoint.path if kind == "local" else f"{'gs' if kind == 'gcs' else kind}://{checkpoint.path.lstrip('/')}"


def report_to_train(metrics: dict, save: Callable[[Path], None] | None = None) -> None:
    """`ray.train.report` from every rank (Train requires the same number of calls on each);
    with `save`, rank 0 writes the checkpoint's files into a temporary folder with it
    and reports that folder as the checkpoint, which Ray copies to the run's storage.
    `world_size` is added to the metrics when the caller did not set it."""
    import ray.train

    if "world_size" not in metrics:  # the AE loop reports its own; fm and segmenter leave it to here
        metrics = {**metrics, "world_size": ray.train.get_context().get_world_size()}
    if save is None or ray.train.get_context().get_world_rank() != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        save(Path(d))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
