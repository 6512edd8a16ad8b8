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

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ablate.backbones.retfound import suggested_taps
from ablate.errors import InvalidInput
from ablate.runtime import RunOptions, final_state, fit_standalone, run_folders
from ablate.weights.table import ablate_weights_file

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
FM_RUN = RunOptions(steps=2000, batch_size=32, lr=5e-4)
# Where the `foundation` term's `model: fundus_mae` (and the losses grid's `auto`) looks.
DEFAULT_OUT = ablate_weights_file("fundus_mae")  # $ABLATE_CACHE/weights/fundus_mae.pth
MAE_FILE = "mae.pth"
TRAIN_STATE_FILE = "train_state.pt"


def resolve_model(preset: str, size: int, arch: dict | None = None, decoder: dict | None = None) -> tuple[dict, dict]:
    """(encoder arch with img_size = size, decoder options) from a preset plus overrides."""
    if preset not in FM_PRESETS:
        raise InvalidInput(f"unknown fm preset {preset!r}; valid: {sorted(FM_PRESETS)}")
    a = {**FM_PRESETS[preset]["arch"], **(arch or {})}
    if "img_size" in a and a["img_size"] != size:
        raise InvalidInput(f"arch img_size {a['img_size']} != training size {size}; set the size only")
    a["img_size"] = size
    if size % a["patch_size"]:
        raise InvalidInput(f"training size {size} px is not a multiple of the patch size {a['patch_size']}; "
                         f"pick --size as a multiple of {a['patch_size']}")
    d = {**FM_PRESETS[preset]["decoder"], **(decoder or {})}
    return a, d


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
    from ablate.runtime import StepLoop, lr_factor, restore_states, resume, start_worker, unwrap

    steps = config["steps"]
    worker, model = start_worker(config, lambda: MaskedAutoencoderViT(
        config["arch"], mask_ratio=config["mask_ratio"], norm_pix_loss=config["norm_pix_loss"], **config["decoder"]))
    rank, world, per_worker, device = worker.rank, worker.world, worker.per_worker, worker.device
    torch.manual_seed(config["seed"] * 1000 + 1 + rank)  # masks differ between ranks
    groups = param_groups_weight_decay(unwrap(model), config["weight_decay"],
                                       no_weight_decay_list=("cls_token", "mask_token", "pos_embed", "decoder_pos_embed"))
    opt = torch.optim.AdamW(groups, lr=config["lr"], betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, config["warmup_steps"]))

    step, epoch, last_loss = 0, 0, float("nan")
    restored = restore_states(device, MAE_FILE, TRAIN_STATE_FILE)
    if restored is not None:  # resumed (same configuration: the run name carries its hash)
        mae, state = restored
        step, epoch = resume(model, opt, sched, mae, state)
        last_loss = float(state.get("loss", "nan"))
    from ablate.data.augment import augment_batch
    from ablate.data.feed import ShardFeed
    from ablate.specs import AugmentSpec

    feed = ShardFeed(ray.train.get_dataset_shard("train"), per_worker, device, cache=config["cache_train"],
                     rank=rank, shuffle_seed=config["seed"])

    def forward(batch, at: int):
        images, _ = batch
        x = augment_batch(images.float() / 255, AugmentSpec(), seed=config["seed"], rank=rank, step=at)
        loss, pred, mask = model(x)
        return loss, {"fm/loss": loss}, x.shape[0], (x, pred, mask)

    def draw(writer, at: int, view) -> None:
        writer.add_image("fm/input|masked|reconstruction", _image_grid(unwrap(model), *view), at)

    def report(at: int, at_epoch: int, last: dict, final: bool) -> None:
        _report(model, opt, sched, at, at_epoch, last.get("fm/loss", float("nan")), config, final)

    loop = StepLoop(steps, config["log_every"], config["image_every"], config["checkpoint_every"], world, "fm",
                    rank, config["tb_dir"])
    loop.run(feed.epoch, forward, opt=opt, sched=sched, report=report, step=step, epoch=epoch,
             last={"fm/loss": last_loss}, draw=draw)


def _report(model, opt, sched, step: int, epoch: int, loss: float, config: dict, final: bool) -> None:
    import torch

    from ablate.fm.mae import save_retfound_format
    from ablate.runtime import report_to_train

    def save(folder: Path) -> None:
        extra = {**config["file_args"], "steps": step, "loss": loss}
        save_retfound_format(model, folder / MAE_FILE, config["arch"], epoch, extra)
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step, "epoch": epoch,
                    "loss": loss}, folder / TRAIN_STATE_FILE)

    report_to_train({"fm/loss": loss, "step": step, "epoch": epoch, "final": final}, save=save)


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
    run: RunOptions = FM_RUN,
    *,
    preset: str = DEFAULT_PRESET,
    arch: dict | None = None,
    decoder: dict | None = None,
    size: int | None = None,
    mask_ratio: float = 0.75,
    norm_pix_loss: bool = True,
    weight_decay: float = 0.05,
) -> PretrainResult:
    """Pretrain an MAE on `data_dir`'s train split; write `out_file` in RETFound's format.

    Args:
        data_dir: a prepared dataset (`ablate prepare`).
        out_file: the checkpoint to write.
        run: steps, batch, lr, workers, logging and placement (`runtime.RunOptions`).
        preset: `fundus_mae_tiny` or `fundus_mae_small`.
        arch: overrides of the preset's encoder (img_size comes from `size`).
        decoder: overrides of the preset's decoder.
        size: training size in px (default: the dataset's prepared size).
        mask_ratio: fraction of patches masked.
        norm_pix_loss: MAE's per-patch normalised target.
        weight_decay: AdamW's, on weights only.

    Everything is validated before Ray starts. The run is named <out stem>-<config hash>
    (see `runtime.run_folders` for the default folders).
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
    run.check()
    arch, decoder = resolve_model(preset, size, arch, decoder)
    from ablate.fm.mae import MaskedAutoencoderViT

    MaskedAutoencoderViT(arch, mask_ratio=mask_ratio, norm_pix_loss=norm_pix_loss, **decoder)  # validates all options
    taps = suggested_taps(arch["depth"])
    run_cfg = {"data": str(data_dir), "size": size, "arch": arch, "decoder": decoder, "mask_ratio": mask_ratio,
               "norm_pix_loss": norm_pix_loss, "weight_decay": weight_decay, **run.hashed()}
    folders = run_folders(out_file, run_cfg, run.tb_dir, run.storage_dir)

    from ablate.data.feed import cache_fits
    from ablate.data.stream import split_dataset
    from ablate.specs import DataSpec

    file_args = {"data": str(data_dir), "size": size, "preset": preset, "target_steps": run.steps,
                 "batch_size": run.batch_size, "lr": run.lr, "seed": run.seed, "taps": list(taps),
                 "optimizer": f"AdamW(0.9, 0.95), wd {weight_decay}, warmup {run.warmup} + cosine"}
    result = fit_standalone(
        fm_train_loop,
        {"arch": arch, "decoder": decoder, "mask_ratio": mask_ratio, "norm_pix_loss": norm_pix_loss,
         "weight_decay": weight_decay, "file_args": file_args,
         "cache_train": cache_fits(manifest["counts"]["train"], size, run.workers, DataSpec().cache_mb)},
        lambda: {"train": split_dataset(str(data_dir), "train", size)},
        folders=folders, run=run,
    )
    final_state(result, TRAIN_STATE_FILE, run.steps, folders.run_dir)
    from ablate.io import atomic_path

    with result.checkpoint.as_directory() as d, atomic_path(out_file) as tmp:
        shutil.copyfile(Path(d) / MAE_FILE, tmp)
    _check_loads(out_file, arch, run.steps)
    return PretrainResult(out_file=out_file, tb_dir=folders.tb_dir, run_dir=folders.run_dir, arch=arch,
                          steps=run.steps,
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
