"""Edge term: distance between edge/ridge filter responses of target and reconstruction.

The paper's authors did not use such a term: they appended a Meijering map as a
4th channel and let the pixel L1 compare it (PAPER.md §3; `normalized_edge_map`
builds that channel). This term tests the other route, a loss on filter
responses, with any filter family from `edge_filters`.

The reconstruction is not clamped: the filters are defined for any real pixel
values, and clamping would cut the gradient wherever the decoder overshoots.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ablate.losses.base import ImageLoss, check_pair
from ablate.losses.edge_filters import CHANNELS, FAMILIES, check_sigma, check_sigmas, edge_map, family_options
from ablate.losses.registry import LOSSES

DISTANCES = ("l1", "l2")


class EdgeLoss(ImageLoss):
    # The filter needs the photograph; an edge map riding along as channel 4 is not filtered again.
    rgb_only = True

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


def _one_of(name: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise ValueError(f"edge: {name} must be one of {list(valid)}, got {value!r}")


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
    _one_of("family", family, list(FAMILIES))
    _one_of("channel", channel, CHANNELS)
    _one_of("distance", distance, DISTANCES)
    if not isinstance(black_ridges, bool):
        raise ValueError(f"edge: black_ridges must be true or false, got {black_ridges!r}")
    given = {
        "sigma": check_sigma(sigma, "edge: sigma"),
        "sigmas": check_sigmas(sigmas, "edge: sigmas"),
        "black_ridges": black_ridges,
    }
    accepted = family_options(family)
    return EdgeLoss(family, channel, distance, {k: v for k, v in given.items() if k in accepted})
