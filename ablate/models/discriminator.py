"""pix2pix PatchGAN discriminator (NLayerDiscriminator), as used by taming and the paper."""

from __future__ import annotations

import torch
from torch import nn


class NLayerDiscriminator(nn.Module):
    """C64-C128-C256-C512 with 4x4 kernels; outputs a map of per-patch logits.

    With n_layers=3 each logit sees a 70x70 receptive field. BatchNorm and
    N(0, 0.02) initialisation as in pix2pix.
    """

    def __init__(self, in_channels: int = 3, filters: int = 64, n_layers: int = 3):
        super().__init__()
        if n_layers < 1 or filters < 1:
            raise ValueError(f"discriminator needs n_layers >= 1 and filters >= 1, got {n_layers}, {filters}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, filters, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(filters * prev, filters * mult, 4, stride, 1, bias=False),
                       nn.BatchNorm2d(filters * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(filters * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)
