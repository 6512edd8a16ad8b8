"""`ablate segmenter train`: train the vessel U-Net on DRIVE's manual masks through Ray Train.

Data. The train split of a prepared dataset (`ablate prepare`, DRIVE at 512 px for
the real model) streamed by Ray Data: each row's image, FOV and vessel mask are
decoded, augmented as a whole (rotation by up to +-`rotate_deg` degrees, bilinear,
masks re-thresholded at 0.5; brightness x U(0.85, 1.15), contrast about the FOV
mean x U(0.85, 1.15), per-channel gain x U(0.95, 1.05), gamma in [1/1.25, 1.25],
all inside the FOV), the image's FOV statistics taken (the U-Net's input
standardisation, see segmenter.py), then `patches_per_image` square patches of
`patch` px are cropped around centres drawn uniformly from the FOV, each flipped
and turned by a random multiple of 90 degrees. Patches of all rows mix in a local
shuffle buffer before batching. A fresh generator per block, so every pass over
the split sees new augmentations. The val split (DRIVE: 2 of the 20 training
images, `ablate prepare`'s seeded choice) is scored on whole images every
`val_every` steps (val/dice, val/loss); `include_val=True` trains on it instead.

Optimisation. Loss = BCE + soft Dice, both over FOV pixels only. Adam (0.9, 0.999),
linear warm-up over the first 5% of steps then cosine decay to 0, per step;
step-based (`steps` optimizer steps, as many passes as needed).

Logging (rank 0): TensorBoard seg/loss, seg/bce, seg/soft_dice (means over
workers), seg/lr, perf/patches_per_s every `log_every` steps; val/dice, val/loss;
an image grid "seg/patch|target|prediction" every `image_every` steps.

Checkpoints. Every `checkpoint_every` steps and at the end rank 0 reports a Ray
Train checkpoint with `segmenter_state.pt` (model, optimizer, schedule, step).
The Train run is named `<out stem>-<hash of the configuration>`, so the same
command resumes an interrupted run and any other configuration starts afresh.

The end (driver). The final checkpoint's model is scored on the test split, whole
images inside the FOV (Dice at 0.5 and ROC AUC, `segmenter.evaluate_split`), and
written atomically to `out_file` with those metrics, the architecture, the
training size and settings; then loaded back once as a check.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ablate.evaluate.segmenter import DEFAULT_ARCH, DEFAULT_WEIGHTS, fov_stats_numpy

STATE_FILE = "segmenter_state.pt"
COLUMNS = ["image", "fov", "vessel"]


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Jitter:
    rotate_deg: float = 15.0
    brightness: float = 0.15
    contrast: float = 0.15
    channel_gain: float = 0.05
    gamma: float = 1.25  # gamma drawn log-uniformly from [1/gamma, gamma]


def _rotate(arr: np.ndarray, angle: float, mask: bool) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(arr)).rotate(angle, Image.Resampling.BILINEAR, fillcolor=0)
    out = np.asarray(im)
    return out >= 128 if mask else out


def augment_image(img: np.ndarray, fov: np.ndarray, vessel: np.ndarray, rng: np.random.Generator,
                  j: Jitter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole-image augmentation of (S, S, 3) uint8, (S, S) bool FOV and vessel mask."""
    if j.rotate_deg > 0:
        angle = float(rng.uniform(-j.rotate_deg, j.rotate_deg))
        img = _rotate(img, angle, False)
        fov = _rotate(fov.astype(np.uint8) * 255, angle, True)
        vessel = _rotate(vessel.astype(np.uint8) * 255, angle, True) & fov
    x = img.astype(np.float32) / 255
    if fov.any():
        x = x * rng.uniform(1 - j.brightness, 1 + j.brightness)
        m = x[fov].mean()
        x = (x - m) * rng.uniform(1 - j.contrast, 1 + j.contrast) + m
        x = x * rng.uniform(1 - j.channel_gain, 1 + j.channel_gain, size=3).astype(np.float32)
        x = np.clip(x, 0, 1) ** float(np.exp(rng.uniform(-math.log(j.gamma), math.log(j.gamma))))
    img = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8) * fov[..., None]
    return img, fov, vessel


def crop_patches(img: np.ndarray, fov: np.ndarray, vessel: np.ndarray, patch: int, n: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` random (patch x patch) crops centred on FOV pixels, each flipped / turned by 90 deg at random.
    Returns image (n, 3, P, P) uint8, fov (n, P, P) uint8 0/255, vessel (n, P, P) uint8 0/255."""
    s = img.shape[0]
    rows, cols = np.nonzero(fov)
    if rows.size == 0:
        rows, cols = np.array([s // 2]), np.array([s // 2])
    pick = rng.integers(0, rows.size, size=n)
    out_i = np.empty((n, 3, patch, patch), np.uint8)
    out_f = np.empty((n, patch, patch), np.uint8)
    out_v = np.empty((n, patch, patch), np.uint8)
    for k, idx in enumerate(pick):
        r0 = int(np.clip(rows[idx] - patch // 2, 0, s - patch))
        c0 = int(np.clip(cols[idx] - patch // 2, 0, s - patch))
        pi = img[r0 : r0 + patch, c0 : c0 + patch].transpose(2, 0, 1)
        pf = fov[r0 : r0 + patch, c0 : c0 + patch]
        pv = vessel[r0 : r0 + patch, c0 : c0 + patch]
        turns, flip = int(rng.integers(0, 4)), bool(rng.random() < 0.5)
        pi, pf, pv = (np.rot90(a, turns, axes=(-2, -1)) for a in (pi, pf, pv))
        if flip:
            pi, pf, pv = pi[..., ::-1], pf[..., ::-1], pv[..., ::-1]
        out_i[k], out_f[k], out_v[k] = pi, pf * np.uint8(255), pv * np.uint8(255)
    return out_i, out_f, out_v


def _decode_row(image: bytes, fov: bytes, vessel: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from ablate.data.preprocess import decode_png

    return decode_png(image), decode_png(fov) > 127, decode_png(vessel) > 127


class PatchSampler:
    """map_batches callable: rows {image, fov, vessel: PNG bytes} -> augmented patches
    {image (N,3,P,P) uint8, fov, vessel (N,P,P) uint8 0/255, stats (N,6) float32: the whole
    augmented image's FOV statistics}, `patches_per_image` per row."""

    def __init__(self, patch: int, patches_per_image: int, jitter: Jitter | None = Jitter()):
        self.patch, self.n, self.jitter = patch, patches_per_image, jitter

    def __call__(self, batch: dict) -> dict:
        rng = np.random.default_rng()
        imgs, fovs, vessels, stats = [], [], [], []
        for data in zip(batch["image"], batch["fov"], batch["vessel"]):
            img, fov, ves = _decode_row(*data)
            if self.jitter is not None:
                img, fov, ves = augment_image(img, fov, ves, rng, self.jitter)
            st = fov_stats_numpy(img, fov)
            pi, pf, pv = crop_patches(img, fov, ves, self.patch, self.n, rng)
            imgs.append(pi), fovs.append(pf), vessels.append(pv), stats.append(np.repeat(st[None], self.n, 0))
        p = self.patch
        if not imgs:
            return {"image": np.zeros((0, 3, p, p), np.uint8), "fov": np.zeros((0, p, p), np.uint8),
                    "vessel": np.zeros((0, p, p), np.uint8), "stats": np.zeros((0, 6), np.float32)}
        return {"image": np.concatenate(imgs), "fov": np.concatenate(fovs), "vessel": np.concatenate(vessels),
                "stats": np.concatenate(stats)}


class WholeImages:
    """map_batches callable for validation: rows -> {image (N,3,S,S) uint8, fov, vessel (N,S,S) uint8 0/255}."""

    def __call__(self, batch: dict) -> dict:
        rows = [_decode_row(*d) for d in zip(batch["image"], batch["fov"], batch["vessel"])]
        return {"image": np.stack([r[0].transpose(2, 0, 1) for r in rows]),
                "fov": np.stack([r[1] for r in rows]).astype(np.uint8) * 255,
                "vessel": np.stack([r[2] for r in rows]).astype(np.uint8) * 255}


# ----------------------------------------------------------------------------- loss


def vessel_loss(logits, target, fov):
    """BCE + soft Dice over FOV pixels. logits (B,H,W); target float 0/1; fov bool. -> (loss, logs)."""
    import torch
    import torch.nn.functional as F

    w = fov.to(logits.dtype)
    n = w.sum().clamp_min(1)
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * w).sum() / n
    p = torch.sigmoid(logits) * w
    t = target * w
    soft_dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    loss = bce + soft_dice
    return loss, {"seg/loss": loss.detach(), "seg/bce": bce.detach(), "seg/soft_dice": soft_dice.detach()}


# ----------------------------------------------------------------------------- worker


def _batch_tensors(batch, device):
    x = batch["image"].to(device).float() / 255
    f = batch["fov"].to(device) > 127
    y = (batch["vessel"].to(device) > 127).float()
    stats = batch["stats"].to(device).float() if "stats" in batch else None
    return x, f, y, stats


def _image_grid(x, y, prob, n: int = 4):
    """(3, n*P, 3*P): per row patch | target | prediction."""
    import torch

    x, y, prob = x[:n, :3].detach().cpu().float(), y[:n].detach().cpu().float(), prob[:n].detach().cpu().float()
    rows = torch.cat([x, y[:, None].expand(-1, 3, -1, -1), prob[:, None].expand(-1, 3, -1, -1)], dim=3)
    return torch.cat(list(rows), dim=1).clamp(0, 1)


def _validate(model, shard, device) -> dict[str, float]:
    """Whole-image val/dice (pooled inside the FOV, threshold 0.5) and val/loss, summed over workers."""
    import torch
    import torch.distributed as dist

    from ablate.evaluate.segmenter import unet_logits

    model.eval()
    sums = torch.zeros(5, dtype=torch.float64)  # tp, pred, target, loss sum, batches
    with torch.no_grad():
        for batch in shard.iter_torch_batches(batch_size=2):
            x, f, y, _ = _batch_tensors(batch, device)
            logits = unet_logits(model, x, f)
            loss, _ = vessel_loss(logits, y, f)
            pred = (torch.sigmoid(logits) > 0.5) & f
            yb = y.bool() & f
            sums += torch.tensor([(pred & yb).sum().item(), pred.sum().item(), yb.sum().item(), loss.item(), 1.0],
                                 dtype=torch.float64)
    model.train()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    tp, npred, ntarget, loss_sum, nb = sums.tolist()
    return {"val/dice": 2 * tp / max(1.0, npred + ntarget), "val/loss": loss_sum / max(1.0, nb)}


def segmenter_train_loop(config: dict) -> None:
    """Per-worker loop of the TorchTrainer (see the module docstring)."""
    import ray.train
    import ray.train.torch
    import torch

    from ablate.evaluate.segmenter import build_unet, unet_logits
    from ablate.fm.pretrain import lr_factor
    from ablate.train.distributed import mean_over_workers, unwrap, worker_context

    steps = config["steps"]
    rank, world, per_worker = worker_context(config["threads"], config["batch_size"])

    torch.manual_seed(config["seed"])  # same init on every rank (DDP broadcasts rank 0's anyway)
    model = ray.train.torch.prepare_model(build_unet(config["arch"]))
    device = ray.train.torch.get_device()
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, config["warmup_steps"]))

    step, epoch, last = 0, 0, {}
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:  # resumed (same configuration: the run name carries its hash)
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / STATE_FILE, map_location=device, weights_only=True)
        unwrap(model).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, epoch = int(state["step"]), int(state["epoch"])

    writer = None
    if rank == 0:
        from ablate.train.tensorboard import TrialWriter

        writer = TrialWriter(config["tb_dir"])
    shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val") if config["validate"] else None
    seen, tic = 0, time.perf_counter()
    final_reported = False
    while step < steps:
        batches = 0
        for batch in shard.iter_torch_batches(batch_size=per_worker, drop_last=True,
                                              local_shuffle_buffer_size=config["shuffle_buffer"]):
            x, f, y, stats = _batch_tensors(batch, device)
            logits = unet_logits(model, x, f, stats)
            loss, logs = vessel_loss(logits, y, f)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            lr_now = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
            step += 1
            batches += 1
            seen += x.shape[0]
            done = step >= steps
            if step % config["log_every"] == 0 or done:
                scalars = mean_over_workers(logs)
                if not math.isfinite(scalars["seg/loss"]):
                    raise FloatingPointError(f"non-finite segmenter loss at step {step}: {scalars}")
                scalars["seg/lr"] = lr_now
                scalars["perf/patches_per_s"] = seen * world / max(time.perf_counter() - tic, 1e-9)
                seen, tic = 0, time.perf_counter()
                last.update(scalars)
                if writer:
                    writer.scalars(scalars, step)
            if writer and (step % config["image_every"] == 0 or done):
                writer.writer.add_image("seg/patch|target|prediction", _image_grid(x, y, torch.sigmoid(logits) * f), step)
            if val_shard is not None and (step % config["val_every"] == 0 or done):
                val = _validate(model, val_shard, device)
                last.update(val)
                if writer:
                    writer.scalars(val, step)
            if step % config["checkpoint_every"] == 0 or done:
                _report(model, opt, sched, step, epoch, last, final=done)
                final_reported = done
            if done:
                break
        if batches == 0:
            raise RuntimeError(f"the train split gave worker {rank} no full batch of {per_worker} patches")
        epoch += 1
    if not final_reported:  # resumed from a run that had already finished: report its state again
        _report(model, opt, sched, step, epoch, last, final=True)
    if writer:
        writer.close()


def _report(model, opt, sched, step: int, epoch: int, last: dict, final: bool) -> None:
    import ray.train
    import torch

    from ablate.train.distributed import unwrap

    metrics = {**last, "step": step, "epoch": epoch, "final": final,
               "world_size": ray.train.get_context().get_world_size()}
    if ray.train.get_context().get_world_rank() != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        torch.save({"model": unwrap(model).state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "step": step, "epoch": epoch}, Path(d) / STATE_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


# ----------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class SegmenterTrainResult:
    out_file: Path
    tb_dir: Path
    run_dir: Path
    arch: dict
    steps: int
    size: int
    metrics: dict  # test split, inside the FOV (empty when the dataset has no test split)
    train_seconds: float
    last: dict = field(default_factory=dict)  # last logged training / validation scalars


def _count_with_vessels(data_dir: Path, split: str) -> int:
    import pyarrow.parquet as pq

    from ablate.data.shards import DatasetError, shard_paths

    n = 0
    for p in shard_paths(data_dir, split):
        col = pq.read_table(p, columns=["vessel"]).column("vessel")
        if col.null_count:
            raise DatasetError(f"{p}: {col.null_count} image(s) of the {split} split have no vessel mask; "
                               f"the segmenter trains on a dataset with manual masks (DRIVE)")
        n += len(col)
    return n


def train_segmenter(
    data_dir: str | os.PathLike,
    out_file: str | os.PathLike = DEFAULT_WEIGHTS,
    steps: int = 1500,
    batch_size: int = 8,
    patch: int = 128,
    lr: float = 2e-3,
    workers: int = 1,
    *,
    arch: dict | None = None,
    patches_per_image: int = 32,
    jitter: Jitter = Jitter(),
    include_val: bool = False,
    warmup_steps: int | None = None,
    val_every: int = 250,
    log_every: int = 20,
    image_every: int | None = None,
    checkpoint_every: int | None = None,
    seed: int = 0,
    address: str | None = None,
    cpus_per_worker: float | None = None,
    gpus_per_worker: float = 0.0,
    tb_dir: str | os.PathLike | None = None,
    storage_dir: str | os.PathLike | None = None,
    eval_split: str | None = "test",
) -> SegmenterTrainResult:
    """Train the vessel U-Net on `data_dir`'s train split; write `out_file` with its test metrics.

    Everything is validated before Ray starts. Defaults: TensorBoard in
    <out dir>/tensorboard/<run>, the Train run (checkpoints) in <out dir>/train/<run>,
    run = <out stem>-<config hash>.
    """
    import torch

    from ablate.data.shards import DatasetError, read_manifest, shard_paths
    from ablate.evaluate.segmenter import build_unet

    data_dir = Path(data_dir).resolve()
    out_file = Path(out_file).expanduser().resolve()
    manifest = read_manifest(data_dir)
    size = int(manifest["image_size"])
    for name, v in (("steps", steps), ("batch_size", batch_size), ("workers", workers), ("log_every", log_every),
                    ("patches_per_image", patches_per_image), ("val_every", val_every)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if batch_size % workers:
        raise ValueError(f"batch_size {batch_size} is not divisible by {workers} workers")
    arch = {**DEFAULT_ARCH, **(arch or {})}
    model = build_unet(arch)  # validates arch
    if patch > size or patch % model.multiple:
        raise ValueError(f"patch {patch} px must be <= the prepared size {size} px and a multiple of "
                         f"{model.multiple} (the U-Net's {arch['levels']} levels)")
    if manifest["counts"].get("train", 0) == 0:
        raise DatasetError(f"{data_dir}: the train split is empty (counts {manifest['counts']})")
    train_splits = ["train"] + (["val"] if include_val and manifest["counts"].get("val", 0) else [])
    n_train = sum(_count_with_vessels(data_dir, s) for s in train_splits)
    validate = not include_val and manifest["counts"].get("val", 0) > 0
    if validate:
        _count_with_vessels(data_dir, "val")
    if eval_split and manifest["counts"].get(eval_split, 0) == 0:
        eval_split = None  # nothing to score on; the file says so (empty metrics)
    elif eval_split:
        _count_with_vessels(data_dir, eval_split)
    warmup = round(0.05 * steps) if warmup_steps is None else int(warmup_steps)
    run_cfg = {"data": str(data_dir), "size": size, "arch": arch, "steps": steps, "batch_size": batch_size,
               "patch": patch, "lr": lr, "patches_per_image": patches_per_image, "jitter": jitter.__dict__,
               "include_val": include_val, "warmup_steps": warmup, "seed": seed}
    digest = hashlib.sha256(json.dumps(run_cfg, sort_keys=True).encode()).hexdigest()[:8]
    run_name = f"{out_file.stem}-{digest}"
    tb_dir = Path(tb_dir).resolve() if tb_dir else out_file.parent / "tensorboard" / run_name
    storage = Path(storage_dir).resolve() if storage_dir else out_file.parent / "train"

    import ray
    import ray.data
    import ray.train
    from ray.train.torch import TorchTrainer

    from ablate.train.launch import _start_ray, plan_placement

    t0 = time.time()
    started_ray = _start_ray(address)
    try:
        placement = plan_placement(ray.cluster_resources().get("CPU", 0), workers, cpus_per_worker,
                                   gpus_per_worker, concurrent=1)
        paths = [p for s in train_splits for p in shard_paths(data_dir, s, verify=False)]
        datasets = {"train": ray.data.read_parquet(paths, columns=COLUMNS).map_batches(
            PatchSampler(patch, patches_per_image, jitter), batch_format="numpy", batch_size=1)}
        if validate:
            datasets["val"] = ray.data.read_parquet(shard_paths(data_dir, "val", verify=False), columns=COLUMNS) \
                .map_batches(WholeImages(), batch_format="numpy", batch_size=2)
        trainer = TorchTrainer(
            segmenter_train_loop,
            train_loop_config={
                "arch": arch, "steps": steps, "batch_size": batch_size, "lr": lr, "warmup_steps": warmup,
                "seed": seed, "threads": placement.threads_per_worker, "log_every": log_every,
                "image_every": image_every or max(1, steps // 10), "val_every": val_every,
                "checkpoint_every": checkpoint_every or min(500, steps), "validate": validate,
                "shuffle_buffer": max(batch_size, min(4 * patches_per_image, 512)), "tb_dir": str(tb_dir),
            },
            scaling_config=placement.scaling_config(),
            run_config=ray.train.RunConfig(name=run_name, storage_path=str(storage),
                                           checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
            datasets=datasets,
        )
        result = trainer.fit()
    finally:
        if started_ray:
            ray.shutdown()
    train_seconds = time.time() - t0

    if result.checkpoint is None:
        raise RuntimeError(f"the Train run {storage / run_name} ended without a checkpoint")
    with result.checkpoint.as_directory() as d:
        state = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)
    if int(state["step"]) != steps:
        raise RuntimeError(f"{storage / run_name}: final checkpoint is at step {state['step']}, expected {steps}")
    model.load_state_dict(state["model"])
    last = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}

    from ablate.evaluate.segmenter import UNetSegmenter, evaluate_split, load_segmenter, save_segmenter

    metrics: dict = {}
    if eval_split:
        metrics = evaluate_split(UNetSegmenter(model, f"unet:{out_file.stem}", size=size), data_dir, eval_split)
    training = {"steps": steps, "batch_size": batch_size, "patch": patch, "lr": lr, "warmup_steps": warmup,
                "patches_per_image": patches_per_image, "jitter": dict(jitter.__dict__), "seed": seed,
                "workers": workers, "train_images": n_train, "splits": train_splits,
                "loss": "BCE + soft Dice inside the FOV", "optimizer": "Adam, warm-up + cosine to 0",
                "train_seconds": round(train_seconds, 1), "run": str(storage / run_name),
                "last": {k: round(v, 6) for k, v in last.items() if k.startswith(("seg/", "val/"))}}
    trained_on = f"{manifest.get('source', data_dir)}: {'+'.join(train_splits)} split(s), {n_train} images at {size} px"
    save_segmenter(out_file, model, arch, size=size, trained_on=trained_on, metrics=metrics, training=training)
    load_segmenter(out_file)  # the file loads the way every user loads it
    return SegmenterTrainResult(out_file=out_file, tb_dir=tb_dir, run_dir=storage / run_name, arch=arch, steps=steps,
                                size=size, metrics=metrics, train_seconds=train_seconds, last=last)
