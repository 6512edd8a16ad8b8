"""Input checks and the fallback FOV shared by the U-Net and the ridge segmenter."""

from __future__ import annotations

import torch

from ablate.checks import check_images, check_mask


def check_segmenter_inputs(images: torch.Tensor, fov: torch.Tensor | None) -> None:
    check_images(images, "vessel segmenter", min_channels=3, finite=False)
    if fov is not None:
        check_mask(fov, images, "vessel segmenter: fov")


def fov_from_images(images: torch.Tensor) -> torch.Tensor:
    """A FOV where none is given: red channel above max(8/255, 0.15 x its 99th percentile)
    per image (the rule `ablate prepare` uses, without its component clean-up)."""
    red = images[:, 0].float()
    q = torch.quantile(red.flatten(1), 0.99, dim=1).view(-1, 1, 1)
    return red > torch.clamp(0.15 * q, min=8 / 255)
