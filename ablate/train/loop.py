"""The per-worker training function run by Ray Train's TorchTrainer.

One call = one worker of one trial. Rank 0 writes TensorBoard and checkpoints;
every rank calls `ray.train.report` the same number of times (Train requires it).
Metrics are averaged over workers before reporting, since Tune sees rank 0's.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from ablate.config import TrialSpec
from ablate.losses import CompositeLoss
from ablate.models.presets import build_for_spec

CHECKPOINT_FILE = "checkpoint.pt"


def _mean_over_workers(logs: dict[str, torch.Tensor]) -> dict[str, float]:
    """One host sync for all values; averaged across ranks when distributed."""
    keys = sorted(logs)
    vec = torch.stack([logs[k].detach().float().reshape(()) for k in keys])
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(vec, op=dist.ReduceOp.SUM)
        vec /= dist.get_world_size()
    return dict(zip(keys, vec.cpu().tolist()))


def _average_gradients(opt: torch.optim.Optimizer) -> None:
    """All-reduce gradients of an optimizer's parameters (discriminators are not
    DDP-wrapped: they run twice per step, real then fake, which DDP does not allow)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    for group in opt.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad /= dist.get_world_size()


def _sharding_check(seen: list[torch.Tensor]) -> dict:
    """Rows each worker read in epoch 0, how many any two workers shared (0 when every
    worker gets its own part of the stream), and the Ray node each worker ran on."""
    import ray

    mine = (torch.cat(seen).tolist() if seen else [], ray.get_runtime_context().get_node_id()[:12])
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, mine)
    else:
        gathered = [mine]
    counts = [len(keys) for keys, _ in gathered]
    overlap = sum(counts) - len(set().union(*(set(keys) for keys, _ in gathered)))
    return {"data/rows_per_worker_epoch0": ",".join(map(str, counts)), "data/shared_rows_epoch0": overlap,
            "node/workers": ",".join(node for _, node in gathered)}


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def _psnr(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    mse = (x[:, :3] - x_hat[:, :3].clamp(0, 1)).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean()


@torch.no_grad()
def validate(model, loss_fn, shard, batch_size, max_batches, step, device, to_input) -> dict[str, torch.Tensor]:
    model.eval()
    loss_fn.eval()  # discriminator BatchNorm must not learn validation statistics
    sums: dict[str, torch.Tensor] = {}
    n = 0
    for batch in shard.iter_torch_batches(batch_size=batch_size, dtypes={"image": torch.uint8, "key": torch.int64},
                                          device=device):
        x = to_input(batch["image"].float() / 255)
        x_hat, aux = model(x)
        _, logs = loss_fn(x, x_hat, aux, step, None)
        logs["psnr"] = _psnr(x, x_hat)
        for k, v in logs.items():
            sums[k] = sums.get(k, 0) + v
        n += 1
        if n >= max_batches:
            break
    model.train()
    loss_fn.train()
    if n == 0:
        raise RuntimeError("validation split yielded no batch on this worker")
    return {f"val/{k}": v / n for k, v in sums.items()}


def train_loop_per_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch

    spec: TrialSpec = config["spec"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(config["threads"])
    t = spec.train
    if t.batch_size % world:
        raise ValueError(f"train.batch_size {t.batch_size} is not divisible by {world} workers")
    per_worker = t.batch_size // world

    torch.manual_seed(spec.seed)  # same init on every rank; DDP broadcasts rank 0's anyway
    model, edge_channel = build_for_spec(spec)
    to_input = edge_channel or (lambda x: x)  # RGB, or RGB + the edge map as channel 4
    model = ray.train.torch.prepare_model(model)
    device = ray.train.torch.get_device()
    loss_fn = CompositeLoss.from_specs(spec.losses).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=t.lr, betas=t.betas)
    # Discriminators (adversarial terms) step with their own optimizer; same betas.
    adversaries = loss_fn.adversaries()
    d_opt = None
    if adversaries:
        d_opt = torch.optim.Adam([{"params": a.module.parameters(), "lr": a.module.disc_lr or t.lr} for a in adversaries],
                                 betas=t.betas)

    step = 0
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / CHECKPOINT_FILE, map_location=device, weights_only=True)
        _unwrap(model).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if d_opt is not None:
            loss_fn.load_trainable_state(state["loss_state"])
            d_opt.load_state_dict(state["disc_optimizer"])
        step = int(state["step"])
    resumed_from = step
    config = {**config, "resumed_from": resumed_from}

    writer = None
    if rank == 0:
        from ablate.train.tensorboard import TrialWriter

        writer = TrialWriter(config["tb_dir"])
        if resumed_from:
            # A worker-group restart (or a resumed grid) continues from the checkpoint's step.
            writer.scalars({"train/resumed_from_step": resumed_from}, resumed_from)
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    total_steps = t.steps if t.epochs is None else None
    last_layer = _unwrap(model).last_layer
    epoch, images_seen, tic = 0, 0, time.perf_counter()
    first_step_at = None
    if total_steps is not None and step >= total_steps:
        # Restored from the final checkpoint (a grid resumed right after this trial ended):
        # report its final state again and train no further.
        _report(model, opt, d_opt, loss_fn, to_input, val_shard, per_worker, step, epoch, device, writer, config,
                first_step_at, checkpoint=False, final=True)
        if writer:
            writer.close()
        return
    done = False
    seen_keys: list[torch.Tensor] = []  # image keys this worker got in its first epoch
    while not done:
        batches = 0
        for batch in train_shard.iter_torch_batches(batch_size=per_worker, dtypes={"image": torch.uint8, "key": torch.int64},
                                                    device=device):
            x = to_input(batch["image"].float() / 255)
            if epoch == 0:
                seen_keys.append(batch["key"].cpu())
            x_hat, aux = model(x)
            loss, logs = loss_fn(x, x_hat, aux, step, last_layer)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if d_opt is not None:
                d_loss, d_logs = loss_fn.discriminator_loss(x, x_hat, step)
                if d_loss is not None:
                    d_opt.zero_grad(set_to_none=True)
                    d_loss.backward()
                    _average_gradients(d_opt)
                    d_opt.step()
                    logs.update(d_logs)
            step += 1
            batches += 1
            images_seen += x.shape[0]
            if first_step_at is None:
                first_step_at = time.time()
            done = total_steps is not None and step >= total_steps
            if step % t.log_every == 0 or done:
                for k in ("perplexity", "codes_used"):
                    if k in aux:
                        logs[f"vq/{k}"] = aux[k]
                scalars = _mean_over_workers(logs)
                bad = {k: v for k, v in scalars.items() if not math.isfinite(v)}
                if bad:
                    # Every rank sees the same all-reduced values, so all stop together. Not an
                    # exception: a restart from the checkpoint would only diverge again.
                    reason = f"non-finite loss at step {step}: {bad}"
                    ray.train.report({"step": step, "epoch": epoch, "final": True, "stop_reason": reason,
                                      "world_size": world, "resumed_from_step": resumed_from})
                    if writer:
                        writer.close()
                    return
                elapsed = time.perf_counter() - tic
                scalars["perf/images_per_s"] = images_seen * world / max(elapsed, 1e-9)
                scalars["lr"] = opt.param_groups[0]["lr"]
                images_seen, tic = 0, time.perf_counter()
                if writer:
                    writer.scalars(scalars, step)
            if writer and (step % t.image_every == 0 or done):
                writer.reconstructions(x, x_hat, step)
            if step % t.val_every == 0 or step % t.checkpoint_every == 0 or done:
                _report(model, opt, d_opt, loss_fn, to_input, val_shard, per_worker, step, epoch, device, writer, config, first_step_at,
                        checkpoint=step % t.checkpoint_every == 0 or done, final=done)
            if done:
                break
        if batches == 0:
            raise RuntimeError(
                f"the train split gave worker {rank} no batch; it has fewer images than the {world} workers need"
            )
        if epoch == 0:
            config["data_check"] = _sharding_check(seen_keys)
        epoch += 1
        if t.epochs is not None and epoch >= t.epochs and not done:
            done = True
            _report(model, opt, d_opt, loss_fn, to_input, val_shard, per_worker, step, epoch, device, writer, config, first_step_at,
                    checkpoint=True, final=True)
    if writer:
        writer.close()


def _report(model, opt, d_opt, loss_fn, to_input, val_shard, batch_size, step, epoch, device, writer, config, first_step_at,
            checkpoint: bool, final: bool) -> None:
    import ray.train

    spec: TrialSpec = config["spec"]
    val = _mean_over_workers(validate(model, loss_fn, val_shard, batch_size, spec.train.val_batches, step, device, to_input))
    if writer:
        writer.scalars(val, step)
    metrics = {**val, **config.get("data_check", {}), "step": step, "epoch": epoch, "final": final, "stop_reason": "",
               "world_size": ray.train.get_context().get_world_size(), "resumed_from_step": config["resumed_from"]}
    if first_step_at is not None:
        metrics["time/startup_s"] = first_step_at - config["trial_started_at"]
    if checkpoint and ray.train.get_context().get_world_rank() == 0:
        with tempfile.TemporaryDirectory() as d:
            state = {"model": _unwrap(model).state_dict(), "optimizer": opt.state_dict(), "step": step,
                     # Plain values, so `ablate evaluate` rebuilds the model from the file alone.
                     "model_spec": {"preset": spec.model.preset, "overrides": dict(spec.model.overrides),
                                    "edge_channel": spec.model.edge_channel, "size": spec.data.size}}
            if d_opt is not None:
                state["loss_state"] = loss_fn.trainable_state()
                state["disc_optimizer"] = d_opt.state_dict()
            torch.save(state, os.path.join(d, CHECKPOINT_FILE))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
    else:
        ray.train.report(metrics)
