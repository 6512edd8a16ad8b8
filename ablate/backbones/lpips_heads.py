"""The LPIPS v0.1 VGG linear heads: five 1x1 convolutions, no bias, 64/128/256/512/512 -> 1.

The file ships inside the `lpips` wheel (lpips/weights/v0.1/vgg.pth, 7 kB), entry
"lpips_vgg_heads" of the table in weights.py, which pins its sha256. It is the
same file taming-transformers distributes as `vgg.pth` (MD5 d507d734..., the one
the paper's code used). The package is located with importlib.util.find_spec,
which does not execute lpips/__init__.py (that would pull in its trainer and more).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ablate.backbones.vgg import CHANNELS
from ablate.weights import WeightsMissing
from ablate.weights.load import fix_for, read_weights_file
from ablate.weights.table import TABLE, locate, package_file

HEADS = TABLE["lpips_vgg_heads"]
HEADS_MD5 = "d507d7349b931f0638a25a48a722f98a"  # provenance only (== taming's vgg.pth); the check is the sha256


def default_heads_path() -> Path:
    """lpips/weights/v0.1/vgg.pth inside the installed lpips package (not checked here)."""
    return package_file(HEADS)


def lpips_heads_path(path: str | os.PathLike | None = None) -> Path:
    """The explicit file, else the wheel's, verified against the table's sha256."""
    if path is None:
        return locate(HEADS.name)
    p = Path(path)
    if not p.is_file():
        raise WeightsMissing(
            f"LPIPS linear heads file {p} is missing. The default ships in the lpips wheel as "
            f"lpips/{HEADS.package_path}; reinstall lpips==0.1.4."
        )
    return p


def load_lpips_heads(path: str | os.PathLike | None = None) -> list[torch.Tensor]:
    """The five head weights, shapes (1, C, 1, 1) for C in 64, 128, 256, 512, 512.

    The default (wheel) file must also match the table's sha256, so a corrupt or
    different file cannot pass as the published LPIPS heads. An explicit path is
    checked for keys and shapes only (tests use it with stand-in files).
    """
    p = lpips_heads_path(path)
    sd = read_weights_file(p, "LPIPS v0.1 VGG heads", fix_for(HEADS.name))
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
