"""Synthetic vessel images and a tiny U-Net for the segmenter tests (no DRIVE needed)."""

from __future__ import annotations

import torch


def synthetic_vessel_batch(n=4, size=32, seed=0):
    """Synthetic fundus-like batch: reddish disc (FOV) with darker random lines (vessels).

    Args:
        n: how many images.
        size: their side in pixels.
        seed: seeds the lines and the noise.

    Returns (images (n, 3, size, size) in [0, 1], fov (n, size, size) bool, vessel (n, size, size) bool).
    """
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    fov = ((yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 < (size / 2 - 1) ** 2).expand(n, -1, -1)
    vessel = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        for _ in range(3):
            a, b = torch.rand(2, generator=g) * 6.28
            d = (torch.cos(a) * (xx - size / 2) + torch.sin(a) * (yy - size / 2) - (b - 3.14) * 2).abs()
            vessel[i] |= d < 1.2
    vessel &= fov
    img = torch.tensor([0.8, 0.45, 0.2]).view(1, 3, 1, 1) * (1 - 0.5 * vessel[:, None].float())
    img = (img + 0.03 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1) * fov[:, None]
    return img, fov.clone(), vessel


def tiny_unet(seed=0):
    """A U-Net of base 4, 3 levels, its weights drawn after torch.manual_seed(seed) (global RNG).

    Args:
        seed: the seed set before building.
    """
    from ablate.segmenter.unet import build_unet

    torch.manual_seed(seed)
    return build_unet({"base": 4, "levels": 3})
