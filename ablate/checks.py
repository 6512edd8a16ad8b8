"""Input checks shared by every loss, metric and feature network (one home, as
torchmetrics keeps `utilities/checks.py`).

The project's image contract: float tensors (B, C, H, W) in [0, 1]. Each check
raises ValueError whose message starts with the caller's `name`, so a user sees
which term, metric or network refused the input.
"""

from __future__ import annotations

import torch

# Resampling can overshoot [0, 1] by rounding; more than this is a bug upstream
# (uint8 not divided by 255, or [-1, 1] images).
RANGE_TOL = 1e-3


def check_images(x: object, name: str, *, channels: int | None = None, min_channels: int | None = None,
                 min_side: int = 0, finite: bool = True) -> None:
    """x is a non-empty float (B, C, H, W) tensor; C == `channels` or C >= `min_channels` when
    given; both sides >= `min_side`; with `finite`, no NaN or inf."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor, got {type(x).__name__}")
    want = f"(B, {channels if channels is not None else 'C'}, H, W)"
    if x.dim() != 4 or (channels is not None and x.shape[1] != channels):
        raise ValueError(f"{name}: expected {want} images, got shape {tuple(x.shape)}")
    if min_channels is not None and x.shape[1] < min_channels:
        raise ValueError(f"{name}: needs at least {min_channels} channels, got {x.shape[1]}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected float images in [0, 1], got {x.dtype} (divide uint8 by 255)")
    if x.numel() == 0:
        raise ValueError(f"{name}: empty batch")
    if finite and not torch.isfinite(x).all():
        raise ValueError(f"{name}: images contain NaN or inf")
    if min_side and min(x.shape[-2:]) < min_side:
        raise ValueError(f"{name}: images must be at least {min_side}x{min_side} px, got {x.shape[-2]}x{x.shape[-1]}")


def check_unit_range(x: torch.Tensor, name: str) -> None:
    """Values within [0, 1] (up to RANGE_TOL)."""
    lo, hi = torch.aminmax(x.detach())
    if not (torch.isfinite(lo) and torch.isfinite(hi)) or lo < -RANGE_TOL or hi > 1 + RANGE_TOL:
        raise ValueError(f"{name}: values must lie in [0, 1], got [{lo.item():.3g}, {hi.item():.3g}] "
                         "(uint8 images must be divided by 255; [-1, 1] images mapped with (x + 1) / 2)")


def check_same_shape(x: torch.Tensor, x_hat: torch.Tensor, name: str) -> None:
    if x.shape != x_hat.shape:
        raise ValueError(f"{name}: target {tuple(x.shape)} and reconstruction {tuple(x_hat.shape)} differ in shape")


def check_pair(x: torch.Tensor, x_hat: torch.Tensor, name: str, channels: int | None = None) -> None:
    """The loss terms' contract: same-shape float (B, C, H, W) tensors, the target in [0, 1]
    (the reconstruction is unconstrained: the decoder is linear); at least `channels`."""
    if not (isinstance(x, torch.Tensor) and isinstance(x_hat, torch.Tensor)):
        raise ValueError(f"{name}: expected tensors, got {type(x).__name__} and {type(x_hat).__name__}")
    check_same_shape(x, x_hat, name)
    check_images(x, name, min_channels=channels, finite=False)
    check_images(x_hat, name, finite=False)
    check_unit_range(x, name)


def check_mask(mask: torch.Tensor, images: torch.Tensor, name: str) -> None:
    """A per-image mask (B, H, W) matching (B, C, H, W) images."""
    if tuple(mask.shape) != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"{name}: mask shape {tuple(mask.shape)} does not match images {tuple(images.shape)} "
                         "(want (B, H, W))")


def finite_float64(a: object, name: str):
    """`a` (a tensor or array-like of samples or statistics) as a float64 numpy array; ValueError
    starting with `name` when it holds NaN or inf (a distance over such features is meaningless)."""
    import numpy as np

    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().numpy()
    out = np.asarray(a, dtype=np.float64)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contains NaN or inf")
    return out
