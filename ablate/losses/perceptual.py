"""LPIPS-VGG16 (Zhang et al. 2018, v0.1) as a loss term, computed exactly as the lpips package does.

    d(x, y) = sum_l mean_hw  w_l . (n(f_l(s(x))) - n(f_l(s(y))))^2
with s the LPIPS ScalingLayer applied to [-1, 1] inputs, f_l the VGG16 relu1_2 ..
relu5_3 activations, n unit normalisation over channels (eps 1e-10) and w_l the
published 1x1 linear heads. The term returns the batch mean.

Inputs arrive in [0, 1] (the calling convention) and are mapped to [-1, 1] here,
which is the range LPIPS was calibrated for. (The paper's code fed [0, 1] straight
in, see docs/paper.md §3; we do not copy that apparent bug.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ablate.backbones.lpips_heads import load_lpips_heads, lpips_heads_path
from ablate.backbones.vgg import vgg16_taps, vgg16_weights_path
from ablate.checks import check_pair
from ablate.losses.base import ImageLoss
from ablate.losses.registry import LOSSES

# lpips.ScalingLayer constants: ImageNet mean/std re-expressed for [-1, 1] inputs.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # lpips.normalize_tensor


def _unit(f: torch.Tensor) -> torch.Tensor:
    # Same expression as lpips.normalize_tensor, so values agree to float rounding.
    return f / (torch.sqrt(torch.sum(f**2, dim=1, keepdim=True)) + EPS)


class LPIPSLoss(ImageLoss):
    autocast_ok = True
    shift: torch.Tensor  # buffers (register_buffer in __init__), declared for type checkers
    scale: torch.Tensor

    def __init__(self, pretrained: bool = True, weights: str | None = None):
        super().__init__()
        self.vgg = vgg16_taps(pretrained=pretrained, weights=weights)
        # Heads are buffers: they move with .to(device) but are never optimised.
        for i, w in enumerate(load_lpips_heads()):
            self.register_buffer(f"head{i}", w)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.pretrained = pretrained
        # The log key says when the trunk is random, so it cannot pass for LPIPS.
        self.tag = "lpips" if pretrained else "lpips[random-vgg]"

    def _taps(self, x01: torch.Tensor) -> list[torch.Tensor]:
        return self.vgg(((2 * x01 - 1) - self.shift) / self.scale)

    def lpips_distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image LPIPS, shape (B,), for images in [0, 1]; gradients flow to both.

        Kept public so evaluation can report the same LPIPS the loss optimises.
        """
        check_pair(x, y, "lpips", channels=3)
        fx, fy = self._taps(x[:, :3]), self._taps(y[:, :3])  # the VGG runs under the ambient autocast
        with torch.autocast(x.device.type, enabled=False):  # unit-normalising and the means in fp32
            total = x.new_zeros(x.shape[0], dtype=torch.float32)
            for i, (a, b) in enumerate(zip(fx, fy)):
                d = (_unit(a.float()) - _unit(b.float())) ** 2
                total = total + F.conv2d(d, getattr(self, f"head{i}").float()).mean(dim=(1, 2, 3))
        return total

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return self.lpips_distance(x, x_hat).mean()


def lpips_preflight(pretrained: bool = True, weights: str | None = None) -> None:
    """Cheap: the files exist and are verified (nothing is loaded, nor fetched)."""
    if pretrained:
        vgg16_weights_path(weights)
    elif weights is not None:
        raise ValueError("lpips: `weights` was given but pretrained=False; pick one")
    lpips_heads_path()


def lpips_needs(pretrained: bool = True, weights: str | None = None) -> dict:
    """The table's files this term loads: the VGG16 trunk (unless random) and the LPIPS heads."""
    return {"vgg16": weights, "lpips_vgg_heads": None} if pretrained else {"lpips_vgg_heads": None}


@LOSSES.register(
    "lpips",
    "LPIPS v0.1 with VGG16 (relu1_2..relu5_3, published linear heads); pretrained: false = random trunk",
    preflight=lpips_preflight,
    needs=lpips_needs,
)
def lpips(pretrained: bool = True, weights: str | None = None) -> LPIPSLoss:
    return LPIPSLoss(pretrained=pretrained, weights=weights)
