"""`ablate fm pretrain`: train a small fundus MAE through Ray Train, save it as RETFound.

Data. The train split of a prepared dataset (`ablate prepare`), streamed by Ray
Data with the project's augmentation (hflip, +-10 deg rotation; no crops), at
`size` px (default: the size it was prepared at).

Optimisation (kept simple, MAE's choices): AdamW, betas (0.9, 0.95), weight
decay 0.05 on weights (none on biases, norms, tokens), linear warm-up over the
first 5% of steps then half-cycle cosine decay to 0, per step. The loop is
step-based (`steps` optimizer steps, as many passes over the split as needed).

Logging (rank 0 only): TensorBoard scalars fm/loss (mean over workers), fm/lr,
perf/images_per_s every `log_every` steps, and an image grid
"fm/input|masked|reconstruction" every `image_every` steps.

Checkpoints. Every `checkpoint_every` steps and at the end, rank 0 reports a Ray
Train checkpoint holding `mae.pth` (the model in RETFound's format, usable as is)
and `train_state.pt` (optimizer, schedule, step, last loss). The file's `epoch`
is the number of completed passes over the train split. The Train run is named after the
output file and a hash of the whole configuration, so re-running the same command
resumes an interrupted run from its last checkpoint, while any change of
configuration starts a fresh run. The final file `out_file` is written by the
DRIVER, copied from the final checkpoint (which Ray persists to storage, so this
works when rank 0 runs on another node), then checked by loading it exactly as
the `foundation` term does.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ablate.backbones.retfound import suggested_taps  # noqa: F401  (re-exported: the fm CLI prints taps)

# Encoder (`arch`, img_size = the training size, added at run time) and decoder.
# tiny: ~5.5 M parameters, ~0.35 s per batch of 16 at 224 px on one CPU thread.
FM_PRESETS: dict[str, dict] = {
    "fundus_mae_tiny": {
        "arch": {"patch_size": 16, "embed_dim": 192, "depth": 6, "num_heads": 3, "mlp_ratio": 4.0},
        "decoder": {"decoder_embed_dim": 128, "decoder_depth": 2, "decoder_num_heads": 4},
    },
    "fundus_mae_small": {
        "arch": {"patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6, "mlp_ratio": 4.0},
        "decoder": {"decoder_embed_dim": 256, "decoder_depth": 4, "decoder_num_heads": 8},
    },
}
DEFAULT_PRESET = "fundus_mae_tiny"
# Where the `foundation` term's `model: fundus_mae` (and the losses grid's `auto`) looks.
DEFAULT_OUT = Path("~/.cache/ablate/weights/fundus_mae.pth").expanduser()
MAE_FILE = "mae.pth"
TRAIN_STATE_FILE = "train_state.pt"
# RETFound's loss taps (blocks 4, 9, 16, 24 of 24), scaled to another depth.


def resolve_model(preset: str, size: int, arch: dict | None = None, decoder: dict | None = None) -> tuple[dict, dict]:
    """(encoder arch with img_size = size, decoder options) from a preset plus overrides."""
    if preset not in FM_PRESETS:
        raise ValueError(f"unknown fm preset {preset!r}; valid: {sorted(FM_PRESETS)}")
    a = {**FM_PRESETS[preset]["arch"], **(arch or {})}
    if "img_size" in a and a["img_size"] != size:
        raise ValueError(f"arch img_size {a['img_size']} != training size {size}; set the size only")
    a["img_size"] = size
    if size % a["patch_size"]:
        raise ValueError(f"training size {size} px is not a multiple of the patch size {a['patch_size']}; "
                         f"pick --size as a multiple of {a['patch_size']}")
    d = {**FM_PRESETS[preset]["decoder"], **(decoder or {})}
    return a, d


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """Multiplier of the base lr for optimizer step `step` (0-based): warm-up, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))


def foundation_options(path: str | os.PathLike) -> dict:
    """The `foundation` loss options that use a checkpoint written here (read from its args)."""
    import torch

    path = Path(path).resolve()
    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    args = ckpt.get("args") if isinstance(ckpt, dict) else None
    if not isinstance(args, dict) or "arch" not in args:
        raise ValueError(f"{path}: no args.arch; not a checkpoint written by `ablate fm pretrain`")
    arch = {k: v for k, v in args["arch"].items() if k != "img_size"}
    return {
        "model": "custom",
        "arch": arch,
        "weights": str(path),
        "imagenet_norm": bool(args.get("imagenet_norm", True)),
        # The size it was trained at; other sizes work (pos_embed is interpolated).
        "input_size": int(args["arch"]["img_size"]),
        "taps": list(args.get("taps") or suggested_taps(arch["depth"])),
    }


# ---------------------------------------------------------------- worker


def _image_grid(model, x, pred, mask, n: int = 4):
    """(3, n*S, 3*S): per row input | masked input | reconstruction."""
    import torch

    x = x[:n].detach().float()
    masked, rec = model.reconstruct(x, pred[:n], mask[:n])
    rows = torch.cat([x.clamp(0, 1), masked, rec], dim=3).cpu()
    return torch.cat(list(rows), dim=1)


def fm_train_loop(config: dict) -> None:
    """Per-worker loop of the TorchTrainer (see the module docstring)."""
    import ray.train
    import ray.train.torch
    import torch
    from timm.optim import param_groups_weight_decay

    from ablate.fm.mae import MaskedAutoencoderViT
    from ablate.train.distributed import mean_over_workers, unwrap, worker_context

    steps = config["steps"]
    rank, world, per_worker = worker_context(config["threads"], config["batch_size"])

    torch.manual_seed(config["seed"])  # same init on every rank (DDP broadcasts rank 0's anyway)
    model = MaskedAutoencoderViT(config["arch"], mask_ratio=config["mask_ratio"],
                                 norm_pix_loss=config["norm_pix_loss"], **config["decoder"])
    model = ray.train.torch.prepare_model(model)
    device = ray.train.torch.get_device()
    torch.manual_seed(config["seed"] * 1000 + 1 + rank)  # masks differ between ranks
    groups = param_groups_weight_decay(unwrap(model), config["weight_decay"],
                                       no_weight_decay_list=("cls_token", "mask_token", "pos_embed", "decoder_pos_embed"))
    opt = torch.optim.AdamW(groups, lr=config["lr"], betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, config["warmup_steps"]))

    step, epoch, last_loss = 0, 0, float("nan")
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:  # resumed (same configuration: the run name carries its hash)
        with ckpt.as_directory() as d:
            mae = torch.load(Path(d) / MAE_FILE, map_location=device, weights_only=True)
            state = torch.load(Path(d) / TRAIN_STATE_FILE, map_location=device, weights_only=True)
        unwrap(model).load_state_dict(mae["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, epoch, last_loss = int(state["step"]), int(state["epoch"]), float(state.get("loss", "nan"))

    writer = None
    if rank == 0:
        from ablate.train.tensorboard import TrialWriter

        writer = TrialWriter(config["tb_dir"])
    from ablate.config import AugmentSpec
    from ablate.data.augment import augment_batch
    from ablate.data.feed import ShardFeed

    feed = ShardFeed(ray.train.get_dataset_shard("train"), per_worker, device, cache=config["cache_train"],
                     rank=rank, shuffle_seed=config["seed"])
    images_seen, tic = 0, time.perf_counter()
    final_reported = False
    while step < steps:
        batches = 0
        for images, _ in feed.epoch(epoch):
            x = augment_batch(images.float() / 255, AugmentSpec(), seed=config["seed"], rank=rank, step=step)
            loss, pred, mask = model(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            lr_now = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
            step += 1
            batches += 1
            images_seen += x.shape[0]
            done = step >= steps
            if step % config["log_every"] == 0 or done:
                scalars = mean_over_workers({"fm/loss": loss})
                if not math.isfinite(scalars["fm/loss"]):
                    raise FloatingPointError(f"non-finite MAE loss at step {step}: {scalars['fm/loss']}")
                last_loss = scalars["fm/loss"]
                elapsed = time.perf_counter() - tic
                scalars["fm/lr"] = lr_now
                scalars["perf/images_per_s"] = images_seen * world / max(elapsed, 1e-9)
                images_seen, tic = 0, time.perf_counter()
                if writer:
                    writer.scalars(scalars, step)
            if writer and (step % config["image_every"] == 0 or done):
                writer.writer.add_image("fm/input|masked|reconstruction", _image_grid(unwrap(model), x, pred, mask), step)
            if step % config["checkpoint_every"] == 0 or done:
                _report(model, opt, sched, step, epoch, last_loss, config, final=done)
                final_reported = done
            if done:
                break
        if batches == 0:
            raise RuntimeError(f"the train split gave worker {rank} no batch; it has fewer images than {world} workers need")
        epoch += 1
    if not final_reported:  # resumed from a run that had already finished: report its state again
        _report(model, opt, sched, step, epoch, last_loss, config, final=True)
    if writer:
        writer.close()


def _report(model, opt, sched, step: int, epoch: int, loss: float, config: dict, final: bool) -> None:
    import ray.train
    import torch

    from ablate.fm.mae import save_retfound_format

    metrics = {"fm/loss": loss, "step": step, "epoch": epoch, "final": final,
               "world_size": ray.train.get_context().get_world_size()}
    if ray.train.get_context().get_world_rank() != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        extra = {**config["file_args"], "steps": step, "loss": loss}
        save_retfound_format(model, Path(d) / MAE_FILE, config["arch"], epoch, extra)
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step, "epoch": epoch,
                    "loss": loss},
                   Path(d) / TRAIN_STATE_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


# ---------------------------------------------------------------- driver


@dataclass(frozen=True)
class PretrainResult:
    out_file: Path
    tb_dir: Path
    run_dir: Path  # the Ray Train run (checkpoints)
    arch: dict
    steps: int
    loss: float  # last logged fm/loss
    foundation: dict = field(default_factory=dict)  # the loss options that use out_file


def pretrain(
    data_dir: str | os.PathLike,
    out_file: str | os.PathLike = DEFAULT_OUT,
    arch: dict | None = None,
    steps: int = 2000,
    batch_size: int = 32,
    lr: float = 5e-4,
    size: int | None = None,
    workers: int = 1,
    tb_dir: str | os.PathLike | None = None,
    *,
    preset: str = DEFAULT_PRESET,
    decoder: dict | None = None,
    mask_ratio: float = 0.75,
    norm_pix_loss: bool = True,
    warmup_steps: int | None = None,
    weight_decay: float = 0.05,
    log_every: int = 20,
    image_every: int | None = None,
    checkpoint_every: int | None = None,
    seed: int = 0,
    address: str | None = None,
    cpus_per_worker: float | None = None,
    gpus_per_worker: float = 0.0,
    storage_dir: str | os.PathLike | None = None,
) -> PretrainResult:
    """Pretrain an MAE on `data_dir`'s train split; write `out_file` in RETFound's format.

    `arch` overrides keys of the preset's encoder (img_size comes from `size`, which
    defaults to the dataset's prepared size). Everything is validated before Ray
    starts. Defaults: tensorboard in <out dir>/tensorboard/<run>, Train run (its
    checkpoints) in <out dir>/train/<run>, run = <out stem>-<config hash>.
    """
    from ablate.data.shards import DatasetError, read_manifest

    data_dir = Path(data_dir).resolve()
    out_file = Path(out_file).resolve()
    manifest = read_manifest(data_dir)  # DatasetError naming the folder / manifest.json
    if manifest["counts"].get("train", 0) == 0:
        raise DatasetError(f"{data_dir}: the train split is empty (counts {manifest['counts']})")
    size = int(size or manifest["image_size"])
    if size > manifest["image_size"]:
        raise DatasetError(f"{data_dir}: prepared at {manifest['image_size']} px, --size asks for {size} px; "
                           f"re-run `ablate prepare SRC --out {data_dir} --size {size}`")
    for name, v in (("steps", steps), ("batch_size", batch_size), ("workers", workers), ("log_every", log_every)):
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if batch_size % workers:
        raise ValueError(f"batch_size {batch_size} is not divisible by {workers} workers")
    arch, decoder = resolve_model(preset, size, arch, decoder)
    from ablate.fm.mae import MaskedAutoencoderViT

    MaskedAutoencoderViT(arch, mask_ratio=mask_ratio, norm_pix_loss=norm_pix_loss, **decoder)  # validates all options
    warmup = round(0.05 * steps) if warmup_steps is None else int(warmup_steps)
    taps = suggested_taps(arch["depth"])
    run_cfg = {"data": str(data_dir), "size": size, "arch": arch, "decoder": decoder, "mask_ratio": mask_ratio,
               "norm_pix_loss": norm_pix_loss, "steps": steps, "batch_size": batch_size, "lr": lr,
               "warmup_steps": warmup, "weight_decay": weight_decay, "seed": seed}
    digest = hashlib.sha256(json.dumps(run_cfg, sort_keys=True).encode()).hexdigest()[:8]
    run_name = f"{out_file.stem}-{digest}"
    tb_dir = Path(tb_dir).resolve() if tb_dir else out_file.parent / "tensorboard" / run_name
    storage = Path(storage_dir).resolve() if storage_dir else out_file.parent / "train"

    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from ablate.config import DataSpec
    from ablate.data.feed import cache_fits
    from ablate.data.stream import split_dataset
    from ablate.train.launch import _start_ray, plan_placement

    started_ray = _start_ray(address)
    try:
        placement = plan_placement(ray.cluster_resources().get("CPU", 0), workers, cpus_per_worker,
                                   gpus_per_worker, concurrent=1)
        file_args = {"data": str(data_dir), "size": size, "preset": preset, "target_steps": steps,
                     "batch_size": batch_size, "lr": lr, "seed": seed, "taps": list(taps),
                     "optimizer": f"AdamW(0.9, 0.95), wd {weight_decay}, warmup {warmup} + cosine"}
        trainer = TorchTrainer(
            fm_train_loop,
            train_loop_config={
                "arch": arch, "decoder": decoder, "mask_ratio": mask_ratio, "norm_pix_loss": norm_pix_loss,
                "steps": steps, "batch_size": batch_size, "lr": lr, "warmup_steps": warmup,
                "weight_decay": weight_decay, "seed": seed, "threads": placement.threads_per_worker,
                "log_every": log_every, "image_every": image_every or max(1, steps // 10),
                "checkpoint_every": checkpoint_every or min(500, steps),
                "tb_dir": str(tb_dir), "file_args": file_args,
                "cache_train": cache_fits(manifest["counts"]["train"], size, workers, DataSpec().cache_mb),
            },
            scaling_config=placement.scaling_config(),
            run_config=ray.train.RunConfig(
                name=run_name,
                storage_path=str(storage),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            ),
            datasets={"train": split_dataset(str(data_dir), "train", size)},
        )
        result = trainer.fit()
    finally:
        if started_ray:
            ray.shutdown()

    if result.checkpoint is None:
        raise RuntimeError(f"the Train run {storage / run_name} ended without a checkpoint")
    from ablate.io import atomic_path

    with result.checkpoint.as_directory() as d:
        with atomic_path(out_file) as tmp:
            shutil.copyfile(Path(d) / MAE_FILE, tmp)
    _check_loads(out_file, arch, steps)
    return PretrainResult(out_file=out_file, tb_dir=tb_dir, run_dir=storage / run_name, arch=arch, steps=steps,
                          loss=float((result.metrics or {}).get("fm/loss", float("nan"))),
                          foundation=foundation_options(out_file))


def _check_loads(path: Path, arch: dict, steps: int) -> None:
    """The written file loads the way the foundation term loads it, and is the finished model."""
    import torch

    from ablate.backbones.retfound import build_vit, load_vit_checkpoint

    load_vit_checkpoint(build_vit(arch), path, format="retfound_mae")
    got = torch.load(str(path), map_location="cpu", weights_only=True)["args"].get("steps")
    if got != steps:
        raise RuntimeError(f"{path}: final checkpoint is at step {got}, expected {steps}")
