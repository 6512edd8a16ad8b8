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


class ImageLoss(nn.Module):
    """Base class of terms comparing target and reconstruction images."""

    reads_aux: str | None = None
    # Terms of the colour photograph (every term but edge_map_l1) receive only the RGB
    # channels when an edge map rides along as a 4th channel: the photograph then weighs
    # the same in every arm (issue 27: a 4-channel mean gave RGB 3/4 of the base arm's weight).
    rgb_only: bool = True
    # The term of that 4th channel alone (edge_map_l1).
    edge_map_only: bool = False
    # True for terms built on a feature network (LPIPS's VGG, the foundation ViT, the
    # PatchGAN): they run under the training autocast and reduce their distances in fp32.
    # The rest (pixel, SSIM, edge filters: cheap) run with autocast off, in fp32.
    autocast_ok: bool = False

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class AuxLoss(nn.Module):
    """Base class of terms that read a tensor from the model's aux output."""

    reads_aux: str = ""

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise ValueError(f"{type(self).__name__}: expected a scalar tensor from the model, got {value!r}")
        return value
