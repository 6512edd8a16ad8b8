"""Frozen torchvision VGG16 `features` trunk, tapped where LPIPS taps it.

Weights are torchvision's own file (`vgg16-397923af.pth`, a plain state_dict with
`features.*` and `classifier.*` keys), entry "vgg16" of the table in weights.py:
    1. the explicit `weights` path,
    2. the environment variable ABLATE_VGG16_WEIGHTS,
    3. torch's hub cache, `<torch.hub.get_dir()>/checkpoints/vgg16-397923af.pth`
       (where torchvision itself puts it), verified against torchvision's hash prefix.
The first one *given* is the one used: a set but wrong path is an error, never a
reason to try the next place. Building the trunk (vgg16_taps) fetches the file
into the hub cache on first use, as torchvision does; looking it up
(vgg16_weights_path) does not, unless asked. A random trunk is only built when
asked for with pretrained=False.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torch import nn

from ablate.weights import WeightsMissing
from ablate.weights.fetch import resolve
from ablate.weights.load import fix_for, read_weights_file
from ablate.weights.table import TABLE

VGG16 = TABLE["vgg16"]
VGG16_FILE, VGG16_ENV, VGG16_URL = VGG16.file, VGG16.env, VGG16.origin
# LPIPS taps: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 as features[a:b] slices.
TAP_NAMES = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
CHANNELS = (64, 128, 256, 512, 512)


def vgg16_weights_path(weights: str | os.PathLike | None = None, fetch: bool = False) -> Path:
    """The file to load, by the lookup order above; with fetch=True a missing file is downloaded
    (verified) first. WeightsMissing says where it looked and how to get the file."""
    return resolve("vgg16", weights, fetch=fetch)


def _features_skeleton() -> nn.Sequential:
    # Built on the meta device: the structure is torchvision's own vgg16, but the
    # 2 s and 500 MB of classifier initialisation that a real build costs are skipped.
    # Every tensor is then replaced by load_state_dict(assign=True, strict=True).
    with torch.device("meta"):
        return torchvision.models.vgg16(weights=None).features


def load_vgg16_features(path: str | os.PathLike) -> nn.Sequential:
    """torchvision vgg16 `features` with the `features.*` tensors of a torchvision-format file."""
    sd = read_weights_file(path, "torchvision VGG16 weights", fix_for("vgg16"))
    if not isinstance(sd, dict):
        raise WeightsMissing(f"{path} is not a torchvision VGG16 state_dict (got {type(sd).__name__})")
    feats = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
    if not feats:
        raise WeightsMissing(
            f"{path} holds no `features.*` keys; expected torchvision's {VGG16_FILE} "
            f"(first keys: {list(sd)[:5]})"
        )
    trunk = _features_skeleton()
    # strict: a file from another VGG variant (e.g. vgg16_bn) fails here naming keys.
    # `classifier.*` is ignored on purpose: LPIPS uses the convolutional trunk only.
    trunk.load_state_dict(feats, strict=True, assign=True)
    return trunk


class VGG16Taps(nn.Module):
    """Frozen VGG16 trunk returning the 5 LPIPS activations. Stays in eval mode."""

    def __init__(self, features: nn.Sequential, pretrained: bool, source: str):
        super().__init__()
        # Children keep torchvision's indices (slices.2.10.weight is features.10.weight),
        # as the lpips package does, so weights are easy to trace back to the file.
        self.slices = nn.ModuleList(
            nn.Sequential(OrderedDict((str(i), features[i]) for i in range(a, b))) for a, b in SLICES
        )
        self.pretrained = pretrained
        self.source = source  # the file loaded, or "random init"
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> VGG16Taps:
        # A frozen feature network must not change behaviour when the model around it
        # goes into training mode (a parent's .train() recurses into children).
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for s in self.slices:
            x = s(x)
            out.append(x)
        return out


def vgg16_taps(pretrained: bool = True, weights: str | os.PathLike | None = None) -> VGG16Taps:
    if not pretrained:
        if weights is not None:
            raise ValueError("VGG16: `weights` was given but pretrained=False; pick one")
        # torchvision's own random initialisation (kaiming normal convs, zero biases).
        return VGG16Taps(torchvision.models.vgg16(weights=None).features, False, "random init")
    path = vgg16_weights_path(weights, fetch=True)  # first use fetches, as torchvision does
    return VGG16Taps(load_vgg16_features(path), True, str(path))
