"""The vessel U-Net's file: written by `ablate segmenter train` (atomically, with what it was
trained on, its scores and its threshold), read back behind the `Segmenter` interface; the
name "ridge" / "ridge:frangi" gives the classical fallback instead."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ablate.errors import InputMissing, InvalidInput
from ablate.segmenter.input_norm import InputNorm, input_norm
from ablate.segmenter.protocol import Segmenter
from ablate.segmenter.ridge import RidgeSegmenter
from ablate.segmenter.unet import UNetSegmenter, build_unet
from ablate.weights.load import read_weights_file
from ablate.weights.table import ablate_weights_file

FILE_VERSION = 1
DEFAULT_WEIGHTS = ablate_weights_file("vessel_unet")  # $ABLATE_CACHE/weights/vessel_unet.pth
TRAIN_COMMAND = "ablate segmenter train --data DIR"


def save_segmenter(path: str | os.PathLike, model: nn.Module, arch: dict, *, size: int, trained_on: str,
                   metrics: dict | None = None, training: dict | None = None,
                   trained_ids: dict[str, str] | None = None, threshold: float = 0.5,
                   threshold_rule: str = "0.5 (fixed)", norm: InputNorm | str = InputNorm.RGB) -> Path:
    """Write a U-Net file atomically: {"model", "arch", "size", "trained_on", "trained_ids", "metrics",
    "training", "threshold", "threshold_rule", "input", "version"}; trained_ids = {content id: source} of
    every training image (the leakage guard, ablate.segmenter.leakage); threshold: the probability
    above which a pixel is vessel, and how it was chosen; input: the input normalisation the
    network was trained on, which the loaded segmenter applies (input_norm.py; absent in files
    from before it, read as rgb)."""
    from ablate.io import atomic_path

    path = Path(path)
    state = {k: v.detach().cpu() for k, v in getattr(model, "module", model).state_dict().items()}  # DDP-wrapped or not
    payload = {"version": FILE_VERSION, "model": state, "arch": dict(arch), "size": int(size),
               "trained_on": str(trained_on), "metrics": dict(metrics or {}), "training": dict(training or {}),
               "threshold": float(threshold), "threshold_rule": str(threshold_rule), "input": input_norm(norm).value}
    if trained_ids is not None:
        payload["trained_ids"] = {str(k): str(v) for k, v in trained_ids.items()}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_segmenter(spec: str | os.PathLike = DEFAULT_WEIGHTS, device: str | torch.device = "cpu") -> Segmenter:
    """"ridge" (= "ridge:meijering") or "ridge:frangi" -> the classical fallback; else a
    U-Net file written by `ablate segmenter train`."""
    s = str(spec)
    if s == "ridge" or s.startswith("ridge:"):
        family = s.split(":", 1)[1] if ":" in s else "meijering"
        return RidgeSegmenter(family.removesuffix("+otsu"))
    path = Path(s).expanduser()
    if not path.is_file():
        raise InputMissing(
            f"{path}: no vessel segmenter weights there; create them with `{TRAIN_COMMAND} --out {path}` "
            f"(DIR: DRIVE prepared by `ablate prepare`), or use the classical fallback 'ridge'"
        )
    # one line naming the file when it is not a torch file of tensors (never torch's weights_only advice)
    ckpt = read_weights_file(path, "a vessel segmenter file",
                             f"Train one with `{TRAIN_COMMAND} --out {path}`, or use the classical fallback 'ridge'.")
    if not isinstance(ckpt, dict) or "model" not in ckpt or "arch" not in ckpt:
        raise InvalidInput(f"{path}: not a vessel segmenter file written by `ablate segmenter train` "
                           "(keys model, arch missing)")
    model = build_unet(ckpt["arch"])
    model.load_state_dict(ckpt["model"])
    meta = {k: v for k, v in ckpt.items() if k != "model"}
    return UNetSegmenter(model.to(device), f"unet:{path.stem}", size=ckpt.get("size"), meta=meta)
