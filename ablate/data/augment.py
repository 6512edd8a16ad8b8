"""Training-time augmentation, in torch, on the worker's device.

It runs after decoding rather than inside the Ray Data pipeline so that a
worker can keep its decoded images (see feed.py) and still see new flips and
rotations every epoch. The draws come from a generator seeded by (trial seed,
rank, step): a trial's augmentations are reproducible, ranks differ, and a
trial resumed from a checkpoint sees the draws it would have seen.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ablate.specs import AugmentSpec


def _generator(seed: int, rank: int, step: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, rank, step]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def augment_batch(x: torch.Tensor, spec: AugmentSpec | None, *, seed: int, rank: int, step: int) -> torch.Tensor:
    """x: float (N, C, S, S) in [0, 1]. Per image: horizontal / vertical flip with
    probability 1/2 each, rotation by U(-rotate_deg, rotate_deg) degrees (bilinear,
    zero fill: the fundus surround is black already, so no new edge appears)."""
    if spec is None or x.shape[0] == 0:
        return x
    if x.dim() != 4:
        raise ValueError(f"augment_batch: expected (N, C, H, W), got shape {tuple(x.shape)}")
    n = x.shape[0]
    g = _generator(seed, rank, step)
    draws = torch.rand(n, 3, generator=g)  # hflip, vflip, angle: drawn whatever is enabled, so one
    # option's draws do not shift when another is switched on or off
    dev = x.device
    if spec.hflip:
        x = torch.where((draws[:, 0] < 0.5).to(dev)[:, None, None, None], x.flip(-1), x)
    if spec.vflip:
        x = torch.where((draws[:, 1] < 0.5).to(dev)[:, None, None, None], x.flip(-2), x)
    if spec.rotate_deg > 0:
        angle = (draws[:, 2] * 2 - 1) * math.radians(spec.rotate_deg)
        cos, sin = angle.cos(), angle.sin()
        zero = torch.zeros_like(cos)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta.to(dev, x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x
