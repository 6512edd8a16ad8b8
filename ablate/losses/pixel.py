"""Pixel-wise distances: mean over every pixel and channel of the colour photograph; and
`edge_map_l1`, the same L1 on the edge map an edge-channel arm also reconstructs (a term of
its own, so RGB weighs the same in every arm and the map's weight is declared)."""

from __future__ import annotations

import torch

from ablate.checks import check_pair
from ablate.losses.base import ImageLoss
from ablate.losses.registry import LOSSES


class L1Loss(ImageLoss):
    name = "l1"  # what its messages start with

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        check_pair(x, x_hat, self.name)
        return (x - x_hat).abs().mean()


class L2Loss(ImageLoss):
    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        check_pair(x, x_hat, "l2")
        return (x - x_hat).pow(2).mean()


class EdgeMapL1Loss(L1Loss):
    name = "edge_map_l1"
    rgb_only = False
    edge_map_only = True


@LOSSES.register("l1", "mean absolute error over pixels and RGB channels (the paper's pixel term)")
def l1() -> L1Loss:
    return L1Loss()


@LOSSES.register("l2", "mean squared error over pixels and RGB channels")
def l2() -> L2Loss:
    return L2Loss()


@LOSSES.register("edge_map_l1", "mean absolute error of the 4th channel, the edge map model.edge_channel adds "
                 "(the paper's 4-channel L1 is l1 x 0.75 + edge_map_l1 x 0.25)")
def edge_map_l1() -> EdgeMapL1Loss:
    return EdgeMapL1Loss()
