"""The LPIPS v0.1 VGG linear heads: five 1x1 convolutions, no bias, 64/128/256/512/512 -> 1.

The file ships inside the `lpips` wheel (lpips/weights/v0.1/vgg.pth, 7 kB). It
is the same file taming-transformers distributes as `vgg.pth` (MD5 d507d734...,
the one the paper's code used), so the check below pins exactly those weights.
The package is located with importlib.util.find_spec, which does not execute
lpips/__init__.py (that would pull in its trainer and more).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import torch

from ablate.backbones import WeightsMissing
from ablate.backbones.vgg import CHANNELS, read_weights_file

HEADS_RELPATH = Path("weights") / "v0.1" / "vgg.pth"
HEADS_MD5 = "d507d7349b931f0638a25a48a722f98a"  # lpips 0.1.4 wheel == taming's vgg.pth


def default_heads_path() -> Path:
    """lpips/weights/v0.1/vgg.pth inside the installed lpips package."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsMissing(
            "LPIPS linear heads lpips/weights/v0.1/vgg.pth not found: the `lpips` package is "
            "not installed. Install it (pip install lpips==0.1.4); the file ships in its wheel."
        )
    return Path(list(spec.submodule_search_locations)[0]) / HEADS_RELPATH


def lpips_heads_path(path: str | os.PathLike | None = None) -> Path:
    p = default_heads_path() if path is None else Path(path)
    if not p.is_file():
        raise WeightsMissing(
            f"LPIPS linear heads file {p} is missing. It ships in the lpips wheel as "
            f"lpips/{HEADS_RELPATH.as_posix()}; reinstall lpips==0.1.4."
        )
    return p


def load_lpips_heads(path: str | os.PathLike | None = None) -> list[torch.Tensor]:
    """The five head weights, shapes (1, C, 1, 1) for C in 64, 128, 256, 512, 512.

    The default (wheel) file must also match the known MD5, so a corrupt or
    different file cannot pass as the published LPIPS heads. An explicit path is
    checked for keys and shapes only (tests use it with stand-in files).
    """
    p = lpips_heads_path(path)
    if path is None:
        md5 = hashlib.md5(p.read_bytes()).hexdigest()
        if md5 != HEADS_MD5:
            raise WeightsMissing(
                f"LPIPS heads file {p} has MD5 {md5}, expected {HEADS_MD5} (lpips 0.1.4); "
                "the file is corrupt or from another version. Reinstall lpips==0.1.4."
            )
    sd = read_weights_file(p)
    if not isinstance(sd, dict):
        raise WeightsMissing(f"LPIPS heads file {p} is not a state_dict (got {type(sd).__name__})")
    heads = []
    for i, c in enumerate(CHANNELS):
        key = f"lin{i}.model.1.weight"  # lpips' NetLinLayer: Sequential(Dropout, Conv2d)
        w = sd.get(key)
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != (1, c, 1, 1):
            got = None if w is None else tuple(getattr(w, "shape", ()))
            raise WeightsMissing(
                f"LPIPS heads file {p}: {key} should have shape (1, {c}, 1, 1), got {got}; "
                f"keys present: {sorted(sd)}"
            )
        heads.append(w.detach().float().clone())
    extra = sorted(set(sd) - {f"lin{i}.model.1.weight" for i in range(len(CHANNELS))})
    if extra:
        raise WeightsMissing(f"LPIPS heads file {p} has unexpected keys {extra}; not a v0.1 VGG heads file")
    return heads
