"""What every per-worker training loop here needs under Ray Train (AE, fundus MAE, segmenter)."""

from __future__ import annotations

import torch
import torch.distributed as dist


def distributed() -> bool:
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


def mean_over_workers(logs: dict[str, torch.Tensor]) -> dict[str, float]:
    """One host sync for all values; averaged across ranks when distributed."""
    keys = sorted(logs)
    vec = torch.stack([logs[k].detach().float().reshape(()) for k in keys])
    if distributed():
        dist.all_reduce(vec, op=dist.ReduceOp.SUM)
        vec /= dist.get_world_size()
    return dict(zip(keys, vec.cpu().tolist()))


def average_gradients(opt: torch.optim.Optimizer) -> None:
    """All-reduce gradients of an optimizer's parameters (discriminators are not
    DDP-wrapped: they run twice per step, real then fake, which DDP does not allow)."""
    if not distributed():
        return
    for group in opt.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad /= dist.get_world_size()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model
