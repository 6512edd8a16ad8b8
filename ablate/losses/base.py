"""What every loss term shares: the calling convention and input validation.

An image term is an nn.Module called as `term(x, x_hat)`:
    x      the target, float in [0, 1], shape (B, C, H, W)
    x_hat  the reconstruction, same shape; unconstrained (the decoder is linear)
and returns an *unweighted* scalar. The composite applies weights. A term that
needs another range (LPIPS wants [-1, 1]) converts inside, documented there.

An aux term (`reads_aux = "<key>"`) instead reads a tensor the model returned
(the codebook loss) and is called as `term(aux_tensor)`.
"""

from __future__ import annotations

import torch
from torch import nn

RANGE_TOL = 1e-3  # resampling can overshoot [0, 1] by rounding; more than this is a bug upstream


def check_pair(x: torch.Tensor, x_hat: torch.Tensor, name: str, channels: int | None = None) -> None:
    """Raise ValueError unless x and x_hat are same-shape (B, C, H, W) floats and x is in [0, 1]."""
    if not (isinstance(x, torch.Tensor) and isinstance(x_hat, torch.Tensor)):
        raise ValueError(f"{name}: expected tensors, got {type(x).__name__} and {type(x_hat).__name__}")
    if x.shape != x_hat.shape:
        raise ValueError(f"{name}: target {tuple(x.shape)} and reconstruction {tuple(x_hat.shape)} differ in shape")
    if x.dim() != 4:
        raise ValueError(f"{name}: expected (B, C, H, W) images, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] < channels:
        raise ValueError(f"{name}: needs at least {channels} channels, got {x.shape[1]}")
    if not (x.is_floating_point() and x_hat.is_floating_point()):
        raise ValueError(f"{name}: expected float tensors, got {x.dtype} and {x_hat.dtype}")
    lo, hi = torch.aminmax(x.detach())
    if lo < -RANGE_TOL or hi > 1 + RANGE_TOL:
        raise ValueError(
            f"{name}: target values must lie in [0, 1], got [{lo.item():.3g}, {hi.item():.3g}] "
            "(uint8 images must be divided by 255)"
        )


class ImageLoss(nn.Module):
    """Base class of terms comparing target and reconstruction images."""

    reads_aux: str | None = None
    # Terms that only make sense on a colour photograph (perceptual, foundation,
    # adversarial) set this to 3 and receive only the RGB channels when an edge map
    # rides along as a 4th channel. Pixel terms see every channel.
    rgb_only: bool = False

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class AuxLoss(nn.Module):
    """Base class of terms that read a tensor from the model's aux output."""

    reads_aux: str = ""

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise ValueError(f"{type(self).__name__}: expected a scalar tensor from the model, got {value!r}")
        return value
