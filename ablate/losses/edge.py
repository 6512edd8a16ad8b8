"""Edge term: distance between edge/ridge filter responses of target and reconstruction.

The paper's authors did not use such a term: they appended a Meijering map as a
4th channel and let the pixel L1 compare it (docs/paper.md §3; `normalized_edge_map`
builds that channel). This term tests the other route, a loss on filter
responses, with any filter family from `edge_filters`.

The reconstruction is not clamped: the filters are defined for any real pixel
values, and clamping would cut the gradient wherever the decoder overshoots.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ablate.checks import check_pair
from ablate.edge_filters import edge_map, filter_options
from ablate.losses.base import ImageLoss
from ablate.losses.registry import LOSSES

DISTANCES = ("l1", "l2")


class EdgeLoss(ImageLoss):
    def __init__(self, family: str, channel: str, distance: str, options: dict):
        super().__init__()
        self.family = family
        self.channel = channel
        self.distance = distance
        self.options = options

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        check_pair(x, x_hat, "edge", channels=3)
        diff = edge_map(x, self.family, self.channel, **self.options) - edge_map(
            x_hat, self.family, self.channel, **self.options
        )
        return diff.abs().mean() if self.distance == "l1" else diff.pow(2).mean()


@LOSSES.register(
    "edge", "L1/L2 between edge or ridge filter responses (sobel, scharr, prewitt, log, canny, meijering, frangi)"
)
def edge(
    family: str = "meijering",
    channel: str = "green",
    distance: str = "l1",
    sigma: float = 1.0,
    sigmas: Sequence[float] = (1.0, 2.0, 3.0),
    black_ridges: bool = True,
) -> EdgeLoss:
    """Options: `sigma` is read by log and canny (Gaussian pre-smoothing);
    `sigmas` and `black_ridges` by meijering and frangi (Hessian scales; dark
    ridges, i.e. vessels in the green channel). sobel/scharr/prewitt read none.
    A family ignores the options it does not read, so a search space can sweep
    `family` with one set of options. The paper used sigmas (0.8, 0.9, 1.0, 1.1)
    at its own resolution; the default (1, 2, 3) also covers wider vessels.
    """
    if distance not in DISTANCES:
        raise ValueError(f"edge: distance must be one of {list(DISTANCES)}, got {distance!r}")
    options = filter_options(family, channel, "edge", sigma=sigma, sigmas=sigmas, black_ridges=black_ridges)
    return EdgeLoss(family, channel, distance, options)
