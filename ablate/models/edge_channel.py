"""The paper's way of using an edge filter: its response rides along as a 4th
image channel that the autoencoder must reconstruct (docs/paper.md §3: the authors'
VQModel._edges() concatenates a Meijering map of the green channel).

The map is computed from the *input* photograph on the fly, scaled to [0, 1]
per image, and carries no gradient (it is data, not a loss). The pixel terms
(L1/L2) then cover it with the RGB channels; RGB-only terms (perceptual,
foundation, adversarial, edge) see the first three channels only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ablate.edge_filters import filter_options, normalized_edge_map

SINGLE_CHANNELS = ("green", "luminance")


@dataclass(frozen=True)
class EdgeChannel:
    family: str = "meijering"
    channel: str = "green"
    options: dict = field(default_factory=dict)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 4, H, W): RGB plus the normalised edge map."""
        return torch.cat([x, normalized_edge_map(x, self.family, self.channel, **self.options)], dim=1)


def parse_edge_channel(raw: dict) -> EdgeChannel:
    """Validate `model.edge_channel: {family, channel, <filter options>}` with the
    same checks as the `edge` loss term (`edge_filters.filter_options`)."""
    if not isinstance(raw, dict):
        raise ValueError(f"edge_channel: expected a mapping like {{family: meijering, channel: green}}, got {raw!r}")
    raw = dict(raw)
    family, channel = raw.pop("family", "meijering"), raw.pop("channel", "green")
    if channel not in SINGLE_CHANNELS:
        raise ValueError(f"edge_channel.channel: must be one of {list(SINGLE_CHANNELS)} (one extra channel), got {channel!r}")
    if "distance" in raw:
        raise ValueError("edge_channel: 'distance' does not apply (the channel is reconstructed by the pixel terms)")
    try:
        options = filter_options(family, channel, "edge_channel", **raw)
    except TypeError as e:
        raise ValueError(f"edge_channel: {e}") from None
    return EdgeChannel(family, channel, options)
