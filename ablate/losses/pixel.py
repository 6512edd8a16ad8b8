"""Pixel-wise distances: mean over every pixel and channel."""

from __future__ import annotations

import torch

from ablate.checks import check_pair
from ablate.losses.base import ImageLoss
from ablate.losses.registry import LOSSES


class L1Loss(ImageLoss):
    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        check_pair(x, x_hat, "l1")
        return (x - x_hat).abs().mean()


class L2Loss(ImageLoss):
    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        check_pair(x, x_hat, "l2")
        return (x - x_hat).pow(2).mean()


@LOSSES.register("l1", "mean absolute error over pixels and channels (the paper's pixel term)")
def l1() -> L1Loss:
    return L1Loss()


@LOSSES.register("l2", "mean squared error over pixels and channels")
def l2() -> L2Loss:
    return L2Loss()
