"""Deep-feature distance in a retinal foundation model (RETFound), the paper's new term.

Both images are bilinearly resized to `input_size`, optionally ImageNet-normalised,
passed through the frozen ViT, and the token sequences (CLS included, no final
norm) after the `taps` blocks are compared. Per tap, a mean over tokens; taps are
summed with equal weights; the batch is averaged.

distance:
  normalized_l2  tokens L2-normalised over channels (eps 1e-10), squared L2 over
                 channels: the paper's code (VitLPIPS). Equals 2 - 2 cos.
  cosine         1 - cos per token.
  l1             mean |a - b| over channels of the raw tokens.

imagenet_norm defaults to False because the authors' loss fed [0, 1] images to
RETFound (the ImageNet constants were defined but never applied; docs/paper.md §3).
True is what RETFound saw in pretraining/fine-tuning and may be the better input.

The model is built at `input_size` (pos_embed interpolated from the checkpoint's
grid when they differ). The target's features are computed under no_grad (they
are constants); the reconstruction path keeps its graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F

from ablate.backbones.retfound import (
    ARCH_REQUIRED,
    FORMATS,
    MODELS,
    check_taps,
    frozen_vit,
    retfound_weights_path,
    suggested_taps,
)
from ablate.checks import check_pair
from ablate.losses.base import ImageLoss
from ablate.losses.registry import LOSSES
from ablate.weights import WeightsMissing
from ablate.weights.load import fix_for, read_weights_file
from ablate.weights.table import TABLE, locate

DISTANCES = ("normalized_l2", "cosine", "l1")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EPS = 1e-10  # as the authors' normalize_tensor


def _token_distance(a: torch.Tensor, b: torch.Tensor, distance: str) -> torch.Tensor:
    """(B, T, C) x2 -> (B,): per-token distance, mean over tokens."""
    if distance == "normalized_l2":
        an = a / (a.pow(2).sum(-1, keepdim=True).sqrt() + EPS)
        bn = b / (b.pow(2).sum(-1, keepdim=True).sqrt() + EPS)
        d = (an - bn).pow(2).sum(-1)
    elif distance == "cosine":
        d = 1 - F.cosine_similarity(a, b, dim=-1)
    else:  # l1
        d = (a - b).abs().mean(-1)
    return d.mean(-1)


FUNDUS_MAE_ENV = TABLE["fundus_mae"].env


def fundus_mae_path(weights: str | None = None) -> Path:
    """Our own fundus MAE (`ablate fm pretrain`): explicit path, else $ABLATE_FUNDUS_MAE_WEIGHTS,
    else $ABLATE_CACHE/weights/fundus_mae.pth (where `ablate fm pretrain` writes by default)."""
    return locate("fundus_mae", weights)


def fundus_mae_args(path: Path) -> dict:
    """The `args` our MAE checkpoints record (arch incl. its training img_size, suggested taps)."""
    ckpt = read_weights_file(path, "a fundus MAE checkpoint", fix_for("fundus_mae"))
    args = ckpt.get("args") if isinstance(ckpt, dict) else None
    if not isinstance(args, dict) or not isinstance(args.get("arch"), dict):
        raise ValueError(f"{path}: no args.arch entry; not a checkpoint written by `ablate fm pretrain`")
    return args


def _resolve(model: str, arch: dict | None, format: str | None, taps, distance: str, input_size: int | None
             ) -> tuple[dict, str, tuple[int, ...], int]:
    """Validate options -> (arch at input_size, checkpoint format, taps, input_size). Cheap.

    `taps` None = RETFound's (4, 9, 16, 24) at the same relative depths of this
    model; `input_size` None = the model's own (224, or a custom arch's img_size)."""
    if model == "fundus_mae":
        if arch is not None:
            raise ValueError("foundation: model 'fundus_mae' takes its architecture from its checkpoint; drop `arch`")
        return {}, "retfound_mae", (), 0
    if distance not in DISTANCES:
        raise ValueError(f"foundation: unknown distance {distance!r}; valid: {DISTANCES}")
    if model == "custom":
        if not arch:
            raise ValueError("foundation: model 'custom' needs an `arch` dict (img_size, patch_size, embed_dim, depth, num_heads)")
        missing = sorted((ARCH_REQUIRED - {"img_size"}) - set(arch))
        if missing:
            raise ValueError(f"foundation: custom `arch` lacks {missing} (img_size comes from input_size)")
        fmt = format or "retfound_mae"
    elif model in MODELS:
        if arch is not None:
            raise ValueError(f"foundation: `arch` is only for model 'custom'; {model!r} has a fixed architecture")
        spec = MODELS[model]
        if format is not None and format != spec["format"]:
            raise ValueError(f"foundation: model {model!r} is stored in {spec['format']!r} format, not {format!r}")
        arch, fmt = spec["arch"], spec["format"]
    else:
        raise ValueError(f"foundation: unknown model {model!r}; valid: {sorted(MODELS) + ['custom']}")
    if fmt not in FORMATS:
        raise ValueError(f"foundation: unknown format {fmt!r}; valid: {FORMATS}")
    if input_size is None:
        input_size = arch.get("img_size", 224) if model == "custom" else 224
    elif "img_size" in arch and model == "custom" and arch["img_size"] != input_size:
        # One source of truth for the resolution: the model runs at input_size.
        raise ValueError(f"foundation: arch img_size {arch['img_size']} != input_size {input_size}; set input_size only")
    arch = {**arch, "img_size": input_size}
    if input_size % arch["patch_size"]:
        raise ValueError(f"foundation: input_size {input_size} is not a multiple of patch size {arch['patch_size']}")
    taps = check_taps(suggested_taps(arch["depth"]) if taps is None else taps, arch["depth"])
    return arch, fmt, taps, input_size


def _weights_file(model: str, weights: str | None, pretrained: bool, fetch: bool) -> Path | None:
    if not pretrained:
        if weights is not None:
            raise ValueError("foundation: `weights` was given but pretrained=False; pick one")
        return None
    if model == "custom":
        if weights is None:
            raise ValueError("foundation: model 'custom' with pretrained=True needs `weights` (a checkpoint path)")
        p = Path(weights).expanduser()
        if not p.is_file():
            raise WeightsMissing(f"foundation: custom ViT checkpoint {p} (the `weights` option) does not exist")
        return p
    return retfound_weights_path(model, weights, fetch=fetch)


class FoundationLoss(ImageLoss):
    autocast_ok = True  # the ViT runs under autocast; the token distances are reduced in fp32
    mean: torch.Tensor  # buffers (register_buffer in __init__), declared for type checkers
    std: torch.Tensor

    def __init__(self, model="retfound", weights=None, arch=None, format=None, taps=None,
                 distance="normalized_l2", imagenet_norm=False, input_size=None, pretrained=True):
        super().__init__()
        if model == "fundus_mae":
            if not pretrained:
                raise ValueError("foundation: model 'fundus_mae' is defined by its checkpoint; for a random ViT use model 'custom'")
            path = fundus_mae_path(weights)
            args = fundus_mae_args(path)
            trained = args["arch"]
            if input_size is not None:  # run at another size: pos_embed is interpolated
                trained = {k: v for k, v in trained.items() if k != "img_size"}
            taps = taps if taps is not None else args.get("taps")
            arch, fmt, taps, input_size = _resolve("custom", trained, format, taps, distance, input_size)
        else:
            arch, fmt, taps, input_size = _resolve(model, arch, format, taps, distance, input_size)
            path = _weights_file(model, weights, pretrained, fetch=True)  # first use fetches (gated: token)
        self.backbone = frozen_vit(arch, pretrained, path, fmt)
        self.taps = check_taps(taps, self.backbone.depth)
        self.distance = distance
        self.imagenet_norm = imagenet_norm
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        # Random weights are flagged in every log key this term writes.
        self.tag = f"foundation[{model}]" if pretrained else f"foundation[{model}|random]"

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.input_size, self.input_size):
            # Bilinear, no antialias: as the authors' code (F.interpolate defaults).
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        if self.imagenet_norm:
            x = (x - self.mean) / self.std
        return x

    def per_image(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """(B,) distance; x is the target (no graph), x_hat keeps its graph."""
        check_pair(x, x_hat, "foundation", channels=3)
        with torch.no_grad():
            ft = self.backbone.tokens(self._prep(x[:, :3]), self.taps)
        fr = self.backbone.tokens(self._prep(x_hat[:, :3]), self.taps)  # the ViT under the ambient autocast
        with torch.autocast(x.device.type, enabled=False):  # token distances reduced in fp32
            # cast: sum() of tensors is a tensor (check_taps leaves at least one tap); typeshed says `| int`.
            return cast(torch.Tensor, sum(_token_distance(r.float(), t.float(), self.distance) for r, t in zip(fr, ft)))

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return self.per_image(x, x_hat).mean()


def foundation_preflight(model="retfound", weights=None, arch=None, format=None, taps=None,
                         distance="normalized_l2", imagenet_norm=False, input_size=None, pretrained=True) -> None:
    """Cheap: options make sense and the checkpoint file exists (it is not loaded, nor fetched)."""
    _resolve(model, arch, format, taps, distance, input_size)
    if model == "fundus_mae":
        fundus_mae_path(weights)
    else:
        _weights_file(model, weights, pretrained, fetch=False)


def foundation_needs(model="retfound", weights=None, pretrained=True, **_options) -> dict:
    """The table's file this term loads (none for a random ViT or a custom checkpoint path, which
    preflight checks; `auto` is decided by the launcher before this is asked)."""
    if not pretrained or model == "custom":
        return {}
    return {model: weights}


@LOSSES.register(
    "foundation",
    "RETFound ViT token distance after blocks 4/9/16/24 (the paper's deep-feature term); "
    "model: retfound | retfound_dinov2 | fundus_mae (ours, `ablate fm pretrain`) | custom; pretrained: false = random ViT",
    preflight=foundation_preflight,
    needs=foundation_needs,
)
def foundation(
    model: str = "retfound",
    weights: str | None = None,
    arch: dict | None = None,
    format: str | None = None,
    taps: tuple[int, ...] | None = None,
    distance: str = "normalized_l2",
    imagenet_norm: bool = False,
    input_size: int | None = None,
    pretrained: bool = True,
) -> FoundationLoss:
    """format None = the named model's own format (retfound_mae for 'retfound' and 'custom');
    taps None = (4, 9, 16, 24) on a 24-block ViT, the same relative depths on others;
    input_size None = 224 (RETFound) or the size a custom / fundus_mae model was trained at."""
    return FoundationLoss(model, weights, arch, format, taps, distance, imagenet_norm, input_size, pretrained)
