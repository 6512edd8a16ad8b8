"""`ablate segmenter train`: train the vessel U-Net on DRIVE's manual masks through Ray Train.

Data. The train split of a prepared dataset (`ablate prepare`, DRIVE at 512 px for
the real model) streamed by Ray Data: each row's image, FOV and vessel mask are
decoded, augmented as a whole as if another camera had taken it (`camera.CameraJitter`:
rotation and zoom with the masks, re-thresholded at 0.5; brightness, contrast, white
balance, gamma, hue, and for some draws blur, resolution loss; noise; all inside the
FOV; `camera="off"` drops all but the zoom, `zoom=1` the zoom: `camera.training_jitter`),
put in the input normalisation (`norm`: clahe-green by default, or rgb; recorded in the file
and applied by the loaded segmenter), the image's FOV statistics taken (the U-Net's input
standardisation, see unet.py), then `patches_per_image` square patches of
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

The end (driver). The final checkpoint's threshold is set on the val split
(`threshold.py`: max pooled Dice; 0.5 without a val split); the model is scored on the
test split at it, whole images inside the FOV (Dice and ROC AUC, `evaluate_split`), and
written atomically to `out_file` with those metrics, the architecture, the
training size and settings; then loaded back once as a check.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ablate.errors import InvalidInput
from ablate.runtime import RunOptions, final_state, fit_standalone, run_folders
from ablate.segmenter.camera import DEFAULT_ZOOM, CameraAugmentation, CameraJitter, training_jitter
from ablate.segmenter.input_norm import DEFAULT_INPUT, InputNorm, input_norm
from ablate.segmenter.patches import COLUMNS, PatchSampler, WholeImages
from ablate.segmenter.unet import DEFAULT_ARCH
from ablate.segmenter.unet_file import DEFAULT_WEIGHTS

STATE_FILE = "segmenter_state.pt"
# 3000 steps: the run measured under the camera augmentation (BENCHMARKS.md); 1500 was measured without it.
SEGMENTER_RUN = RunOptions(steps=3000, batch_size=8, lr=2e-3)


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

    from ablate.segmenter.unet import unet_logits

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

    from ablate.runtime import StepLoop, lr_factor, restore_states, resume, start_worker
    from ablate.segmenter.unet import build_unet, unet_logits

    steps = config["steps"]
    worker, model = start_worker(config, lambda: build_unet(config["arch"]))
    rank, world, per_worker, device = worker.rank, worker.world, worker.per_worker, worker.device
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, config["warmup_steps"]))

    step, epoch = 0, 0
    restored = restore_states(device, STATE_FILE)
    if restored is not None:  # resumed (same configuration: the run name carries its hash)
        step, epoch = resume(model, opt, sched, restored[0], restored[0])
    shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val") if config["validate"] else None

    def batches(_epoch: int):
        return shard.iter_torch_batches(batch_size=per_worker, drop_last=True,
                                        local_shuffle_buffer_size=config["shuffle_buffer"])

    def forward(batch, _step: int):
        x, f, y, stats = _batch_tensors(batch, device)
        logits = unet_logits(model, x, f, stats)
        loss, logs = vessel_loss(logits, y, f)
        return loss, logs, x.shape[0], (x, y, f, logits)

    def draw(writer, at: int, view) -> None:
        x, y, f, logits = view
        writer.add_image("seg/patch|target|prediction", _image_grid(x, y, torch.sigmoid(logits) * f), at)

    def report(at: int, at_epoch: int, last: dict, final: bool) -> None:
        _report(model, opt, sched, at, at_epoch, last, final)

    loop = StepLoop(steps, config["log_every"], config["image_every"], config["checkpoint_every"], world, "seg",
                    rank, config["tb_dir"], rate_key="perf/patches_per_s",
                    val_every=config["val_every"] if val_shard is not None else None)
    loop.run(batches, forward, opt=opt, sched=sched, report=report, step=step, epoch=epoch, draw=draw,
             validate=lambda: _validate(model, val_shard, device))


def _report(model, opt, sched, step: int, epoch: int, last: dict, final: bool) -> None:
    import torch

    from ablate.runtime import report_to_train, unwrap

    def save(folder: Path) -> None:
        torch.save({"model": unwrap(model).state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "step": step, "epoch": epoch}, folder / STATE_FILE)

    report_to_train({**last, "step": step, "epoch": epoch, "final": final}, save=save)


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


def _jitter_record(jitter: CameraJitter | None) -> dict | None:
    """The augmentation's ranges as recorded (None: none)."""
    return None if jitter is None else dict(jitter.__dict__)


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
    run: RunOptions = SEGMENTER_RUN,
    *,
    patch: int = 128,
    arch: dict | None = None,
    patches_per_image: int = 32,
    camera: CameraAugmentation | str = CameraAugmentation.ON,
    zoom: float = DEFAULT_ZOOM,
    norm: InputNorm | str = DEFAULT_INPUT,
    include_val: bool = False,
    val_every: int = 250,
    eval_split: str | None = "test",
) -> SegmenterTrainResult:
    """Train the vessel U-Net on `data_dir`'s train split; write `out_file` with its test metrics.

    Args:
        data_dir: a prepared dataset with manual vessel masks (DRIVE).
        out_file: the U-Net file to write.
        run: steps, batch (patches), lr, workers, logging and placement (`runtime.RunOptions`).
        patch: side of the training crops, px.
        arch: U-Net overrides of DEFAULT_ARCH.
        patches_per_image: crops per augmented image per pass.
        camera: `on`, a random camera per image (rotation, photometry, blur, resolution, noise;
            camera.py); `off`, none of that.
        zoom: the scale jitter, apart from `camera`: scale from [1/zoom, zoom]; 1 = none.
        norm: the input normalisation (input_norm.py: `clahe-green`, the default, or `rgb`), recorded in the
            file and applied by the loaded segmenter.
        include_val: train on the val split too (then nothing is validated).
        val_every: steps between whole-image validations.
        eval_split: the split scored into the file at the end (None: none).

    Everything is validated before Ray starts; the run is named <out stem>-<config hash>.
    """
    from ablate.data.shards import DatasetError, read_manifest, shard_paths
    from ablate.segmenter.unet import build_unet

    data_dir = Path(data_dir).resolve()
    out_file = Path(out_file).expanduser().resolve()
    manifest = read_manifest(data_dir)
    size = int(manifest["image_size"])
    run.check()
    jitter = training_jitter(camera, zoom)
    norm = input_norm(norm)
    for name, v in (("patches_per_image", patches_per_image), ("val_every", val_every)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InvalidInput(f"{name} must be an integer >= 1, got {v!r}")
    arch = {**DEFAULT_ARCH, **(arch or {})}
    model = build_unet(arch)  # validates arch
    if patch > size or patch % model.multiple:
        raise InvalidInput(f"patch {patch} px must be <= the prepared size {size} px and a multiple of "
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
    run_cfg = {"data": str(data_dir), "size": size, "arch": arch, "patch": patch,
               "patches_per_image": patches_per_image, "jitter": _jitter_record(jitter), "include_val": include_val,
               **({"input": norm.value} if norm is not InputNorm.RGB else {}), **run.hashed()}
    folders = run_folders(out_file, run_cfg, run.tb_dir, run.storage_dir)

    def datasets() -> dict:
        import ray.data

        paths = [p for s in train_splits for p in shard_paths(data_dir, s, verify=False)]
        out = {"train": ray.data.read_parquet(paths, columns=COLUMNS).map_batches(
            PatchSampler(patch, patches_per_image, jitter, norm), batch_format="numpy", batch_size=1)}
        if validate:
            out["val"] = ray.data.read_parquet(shard_paths(data_dir, "val", verify=False), columns=COLUMNS) \
                .map_batches(WholeImages(norm), batch_format="numpy", batch_size=2)
        return out

    t0 = time.time()
    result = fit_standalone(
        segmenter_train_loop,
        {"arch": arch, "val_every": val_every, "validate": validate,
         "shuffle_buffer": max(run.batch_size, min(4 * patches_per_image, 512))},
        datasets, folders=folders, run=run,
    )
    train_seconds = time.time() - t0
    state = final_state(result, STATE_FILE, run.steps, folders.run_dir)
    model.load_state_dict(state["model"])
    last = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}

    from ablate.segmenter.evaluation import evaluate_split
    from ablate.segmenter.unet import UNetSegmenter
    from ablate.segmenter.unet_file import load_segmenter, save_segmenter

    threshold, rule = 0.5, "0.5 (no val split to set it on)"
    if validate:
        from ablate.segmenter.evaluation import predict_arrays
        from ablate.segmenter.labelled import load_split
        from ablate.segmenter.threshold import best_threshold

        images, fov, vessel, _ = load_split(data_dir, "val")
        prob = predict_arrays(UNetSegmenter(model, "val", size=size, norm=norm), images, fov)
        threshold, val_dice = best_threshold(prob, vessel, fov)
        rule = f"max pooled Dice on the val split ({len(images)} images): {val_dice:.4f}"
    metrics: dict = {}
    if eval_split:
        metrics = evaluate_split(UNetSegmenter(model, f"unet:{out_file.stem}", size=size, threshold=threshold,
                                               norm=norm), data_dir, eval_split)
    training = {**run.hashed(), "patch": patch, "patches_per_image": patches_per_image,
                "camera": CameraAugmentation(camera).value, "zoom": float(zoom), "jitter": _jitter_record(jitter),
                "input": norm.value, "workers": run.workers, "train_images": n_train, "splits": train_splits,
                "loss": "BCE + soft Dice inside the FOV", "optimizer": "Adam, warm-up + cosine to 0",
                "train_seconds": round(train_seconds, 1), "run": str(folders.run_dir),
                "last": {k: round(v, 6) for k, v in last.items() if k.startswith(("seg/", "val/"))}}
    trained_on = f"{manifest.get('source', data_dir)}: {'+'.join(train_splits)} split(s), {n_train} images at {size} px"
    from ablate.segmenter.leakage import split_ids

    save_segmenter(out_file, model, arch, size=size, trained_on=trained_on, metrics=metrics, training=training,
                   trained_ids=split_ids(data_dir, train_splits), threshold=threshold, threshold_rule=rule, norm=norm)
    load_segmenter(out_file)  # the file loads the way every user loads it
    return SegmenterTrainResult(out_file=out_file, tb_dir=folders.tb_dir, run_dir=folders.run_dir, arch=arch,
                                steps=run.steps,
                                size=size, metrics=metrics, train_seconds=train_seconds, last=last)
