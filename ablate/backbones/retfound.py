"""RETFound (and any plain ViT) as a frozen token-feature extractor.

Architecture. RETFound's models_vit.vit_large_patch16 is timm's VisionTransformer
(img 224, patch 16, dim 1024, depth 24, 16 heads, mlp 4, qkv_bias, LayerNorm eps
1e-6). We build it with num_classes=0 (no head) and global_pool="token": that is
RETFound's global_pool=False variant, the one the paper's loss used. It keeps the
final `norm` (present in the MAE checkpoint, so the load is strict) and adds no
`fc_norm`. The pooling choice changes nothing we compute: features are read from
the token sequence between blocks, before any norm or pooling.

Checkpoint formats handled by load_vit_checkpoint:
  retfound_mae  ckpt["model"] of an MAE pretraining file (decoder_*, mask_token kept
                there), or, only if the file is itself a plain state dict, that dict.
  dinov2        ckpt["teacher"], renamed backbone.->'', mlp.w12.->mlp.fc1., mlp.w3.->mlp.fc2.
                (RETFound's own main_finetune renames).
  state_dict    a plain state dict in timm names.
Keys that the model lacks *by design* are dropped from an explicit allow-list;
everything else must match (strict), and a mismatch raises naming the keys.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeGuard

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ablate.errors import AblateError
from ablate.weights.fetch import resolve
from ablate.weights.load import read_weights_file
from ablate.weights.table import TABLE

log = logging.getLogger(__name__)

# Named models: architecture and checkpoint format. Their files (source, hash, cache,
# override) are the entries of the same name in weights.TABLE.
MODELS: dict[str, dict[str, Any]] = {
    "retfound": {
        "arch": {"img_size": 224, "patch_size": 16, "embed_dim": 1024, "depth": 24, "num_heads": 16},
        "format": "retfound_mae",
    },
    "retfound_dinov2": {
        # timm's vit_large_patch14_dinov2 at 224 px; init_values = its LayerScale.
        "arch": {"img_size": 224, "patch_size": 14, "embed_dim": 1024, "depth": 24, "num_heads": 16,
                 "init_values": 1e-5},
        "format": "dinov2",
    },
}
RETFOUND_ENV, RETFOUND_DINOV2_ENV = TABLE["retfound"].env, TABLE["retfound_dinov2"].env
FORMATS = ("retfound_mae", "dinov2", "state_dict")
ARCH_KEYS = {"img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "init_values"}
ARCH_REQUIRED = {"img_size", "patch_size", "embed_dim", "depth", "num_heads"}

# Checkpoint keys the model lacks on purpose, per format: (substrings, prefixes).
_DROP = {
    # MAE decoder and mask token (pretraining only); a classification head or the
    # global-pool fc_norm of a fine-tuned file (we use neither).
    "retfound_mae": (("decoder", "mask_token"), ("head.", "fc_norm.")),
    # DINOv2 mask token and its DINO/iBOT projection heads (training only).
    "dinov2": (("mask_token",), ("head.", "dino_head.", "ibot_head.")),
    "state_dict": ((), ("head.", "fc_norm.")),
}
_DINOV2_RENAMES = (("backbone.", ""), ("mlp.w12.", "mlp.fc1."), ("mlp.w3.", "mlp.fc2."))


class CheckpointMismatch(AblateError, ValueError):
    """The checkpoint's tensors do not fit the model (the message names the keys)."""


# ---------------------------------------------------------------- architecture


def build_vit(arch: dict) -> VisionTransformer:
    """A timm ViT in RETFound's configuration (qkv_bias, LayerNorm eps 1e-6, no head)."""
    unknown = set(arch) - ARCH_KEYS
    missing = ARCH_REQUIRED - set(arch)
    if unknown or missing:
        raise ValueError(
            f"ViT arch: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}; "
            f"valid: {sorted(ARCH_KEYS)}"
        )
    if arch["img_size"] % arch["patch_size"]:
        raise ValueError(f"ViT arch: img_size {arch['img_size']} is not a multiple of patch_size {arch['patch_size']}")
    return VisionTransformer(
        img_size=arch["img_size"],
        patch_size=arch["patch_size"],
        embed_dim=arch["embed_dim"],
        depth=arch["depth"],
        num_heads=arch["num_heads"],
        mlp_ratio=arch.get("mlp_ratio", 4.0),
        qkv_bias=True,
        init_values=arch.get("init_values"),
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        num_classes=0,
        global_pool="token",
    )


def resize_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], num_prefix: int = 1) -> torch.Tensor:
    """Bicubic resize of a (1, prefix + h*w, C) position embedding to `grid`; prefix (CLS) kept.

    Same operation as MAE/RETFound's interpolate_pos_embed (square source grid,
    align_corners=False), written here so the behaviour is ours and tested.
    """
    n = pos_embed.shape[1] - num_prefix
    side = round(n**0.5)
    if side * side != n:
        raise CheckpointMismatch(f"pos_embed has {n} patch positions, not a square grid")
    if (side, side) == tuple(grid):
        return pos_embed
    prefix, tokens = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    c = tokens.shape[-1]
    tokens = tokens.reshape(1, side, side, c).permute(0, 3, 1, 2).float()
    tokens = F.interpolate(tokens, size=tuple(grid), mode="bicubic", align_corners=False)
    tokens = tokens.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], c).to(pos_embed.dtype)
    return torch.cat([prefix, tokens], dim=1)


# ---------------------------------------------------------------- loading


@dataclass
class LoadReport:
    path: str
    format: str
    source: str  # which part of the file held the weights, e.g. "ckpt['model']"
    dropped: list[str] = field(default_factory=list)
    pos_embed_resized: tuple[tuple[int, ...], tuple[int, ...]] | None = None


def _is_state_dict(obj: object) -> TypeGuard[dict]:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _extract(ckpt: object, fmt: str, path: str) -> tuple[dict, str]:
    if fmt == "retfound_mae":
        if isinstance(ckpt, dict) and "model" in ckpt:
            return dict(ckpt["model"]), "ckpt['model']"
        if _is_state_dict(ckpt):
            return dict(ckpt), "plain state dict (no 'model' entry)"
    elif fmt == "dinov2":
        if isinstance(ckpt, dict) and "teacher" in ckpt:
            sd = {}
            for k, v in ckpt["teacher"].items():
                for old, new in _DINOV2_RENAMES:
                    k = k.replace(old, new)
                sd[k] = v
            return sd, "ckpt['teacher'] (renamed backbone./mlp.w12./mlp.w3.)"
    elif fmt == "state_dict":
        if _is_state_dict(ckpt):
            return dict(ckpt), "plain state dict"
    else:
        raise ValueError(f"unknown checkpoint format {fmt!r}; valid: {FORMATS}")
    top = list(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
    raise CheckpointMismatch(f"{path}: not a {fmt} checkpoint (top level: {top})")


def load_vit_checkpoint(model: VisionTransformer, path: str | os.PathLike, format: str = "retfound_mae") -> LoadReport:
    """Load a ViT checkpoint of the given format into `model` strictly; returns what was done."""
    path = str(path)
    # A file storing training args as an object (argparse.Namespace) is refused here: the message
    # says to re-save only its tensors (ckpt['model'] or ckpt['teacher']).
    ckpt = read_weights_file(path, f"a ViT checkpoint ({format})",
                             "Point the `weights` option of foundation (or the model's environment variable, see "
                             "`ablate weights`) at a good copy.")
    sd, source = _extract(ckpt, format, path)
    report = LoadReport(path=path, format=format, source=source)

    own = model.state_dict()
    subs, prefixes = _DROP[format]
    for k in list(sd):
        if k not in own and (any(s in k for s in subs) or k.startswith(prefixes)):
            report.dropped.append(k)
            del sd[k]

    if "pos_embed" in sd and sd["pos_embed"].shape != own["pos_embed"].shape:
        old = tuple(sd["pos_embed"].shape)
        sd["pos_embed"] = resize_pos_embed(sd["pos_embed"], model.patch_embed.grid_size, model.num_prefix_tokens)
        report.pos_embed_resized = (old, tuple(sd["pos_embed"].shape))

    unexpected = sorted(set(sd) - set(own))
    missing = sorted(set(own) - set(sd))
    wrong = sorted(f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                   for k in set(sd) & set(own) if sd[k].shape != own[k].shape)
    if unexpected or missing or wrong:
        raise CheckpointMismatch(
            f"{path} ({format}, {source}) does not fit the model: unexpected keys {unexpected}, "
            f"missing keys {missing}, shape mismatches {wrong}"
        )
    model.load_state_dict(sd, strict=True)
    log.info("loaded %s from %s (%s); dropped %d keys; pos_embed %s",
             format, path, source, len(report.dropped), report.pos_embed_resized or "kept")
    return report


def retfound_weights_path(model: str, weights: str | os.PathLike | None = None, fetch: bool = False,
                          needed_by: tuple[str, ...] = ()) -> Path:
    """Explicit path, else the model's env var, else the Hugging Face cache (verified); with fetch=True
    a missing file is downloaded from the Hub first (gated: the user's token). See weights.py."""
    if model not in MODELS:
        raise ValueError(f"unknown RETFound model {model!r}; valid: {sorted(MODELS)}")
    return resolve(model, weights, fetch=fetch, needed_by=needed_by)


# ---------------------------------------------------------------- frozen extractor


class FrozenViT(nn.Module):
    """A frozen ViT whose `tokens` method reads the token sequence after given blocks."""

    def __init__(self, vit: VisionTransformer, pretrained: bool, source: str):
        super().__init__()
        # The token path below assumes the standard layout: one CLS token carried
        # in pos_embed, no register tokens, no pre-norm.
        if (vit.no_embed_class or vit.num_prefix_tokens != 1 or vit.cls_token is None or vit.pos_embed is None
                or not isinstance(vit.norm_pre, nn.Identity)):
            raise ValueError("FrozenViT supports plain ViTs with one CLS token, a position embedding and no pre-norm")
        self.vit = vit
        self.pretrained = pretrained
        self.source = source
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenViT:
        # Locked in eval mode whatever the parent does (no dropout / drop-path at loss time).
        return super().train(False)

    @property
    def depth(self) -> int:
        return len(self.vit.blocks)

    @property
    def img_size(self) -> int:
        return self.vit.patch_embed.img_size[0]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """patch embed + CLS + pos_embed (+ pos_drop), as RETFound's forward_features begins."""
        v = self.vit
        assert v.cls_token is not None and v.pos_embed is not None  # __init__ refuses a ViT without them
        x = v.patch_embed(x)
        x = torch.cat([v.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return v.pos_drop(x + v.pos_embed)

    def tokens(self, x: torch.Tensor, taps: tuple[int, ...] = (4, 9, 16, 24)) -> list[torch.Tensor]:
        """(B, 1 + N, C) token sequences after each 1-based block index in `taps`, no final norm."""
        taps = check_taps(taps, self.depth)
        h = self.embed(x)
        out = []
        for i, blk in enumerate(self.vit.blocks[: taps[-1]], start=1):
            h = blk(h)
            if i in taps:
                out.append(h)
        return out


RETFOUND_TAPS = (4, 9, 16, 24)  # the paper's taps on RETFound's 24 blocks


def suggested_taps(depth: int) -> tuple[int, ...]:
    """RETFound's taps at the same relative depths: depth 6 -> (1, 2, 4, 6), 12 -> (2, 5, 8, 12)."""
    return tuple(sorted({max(1, int(depth * t / 24 + 0.5)) for t in RETFOUND_TAPS}))


def check_taps(taps, depth: int) -> tuple[int, ...]:
    t = tuple(int(i) for i in taps)
    if not t or list(t) != sorted(set(t)) or t[0] < 1 or t[-1] > depth:
        raise ValueError(f"taps {tuple(taps)} must be increasing, unique, 1-based block indices in 1..{depth}")
    return t


def frozen_vit(arch: dict, pretrained: bool, path: str | os.PathLike | None, format: str) -> FrozenViT:
    """Build `arch`; with pretrained, load `path` in `format` (required); else timm's random init."""
    vit = build_vit(arch)
    if not pretrained:
        return FrozenViT(vit, False, "random init")
    if path is None:
        raise ValueError("a pretrained ViT needs a weights path")
    report = load_vit_checkpoint(vit, path, format)
    return FrozenViT(vit, True, f"{report.path} [{report.source}]")
