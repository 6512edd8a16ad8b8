"""The paper's way of using an edge filter: its response rides along as a 4th
image channel that the autoencoder must reconstruct (docs/paper.md §3: the authors'
VQModel._edges() concatenates a Meijering map of the green channel), and the
controls that take that arm apart (issue 27).

The map is computed from the photograph on the fly, scaled to [0, 1] per image,
and carries no gradient (it is data, not a loss). Its reconstruction is scored by
its own named term (`edge_map_l1`), so the RGB pixel terms weigh the colour
photograph the same in every arm; RGB-only terms (perceptual, foundation,
adversarial, edge) never see it.

Roles (`model.edge_channel.role`):
  input_and_target  the paper's: the map is a 4th input channel and a 4th output
                    channel. At test time the test image's own map is an input.
  target_only       the control: the encoder sees RGB only; the decoder must also
                    draw the map. Nothing but the photograph is an input at test time.
Families: every edge-filter family of `ablate.edge_filters`, and `gaussian`: the
blurred channel (option `sigma`, px), a 4th channel with no vessel prior, the
control for "any extra channel" against "a vessel-enhancing channel".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import torch

from ablate.edge_filters import (
    FAMILIES,
    check_sigma,
    filter_options,
    gaussian_blur,
    normalized_edge_map,
    select_channel,
)

SINGLE_CHANNELS = ("green", "luminance")
BLUR_FAMILY = "gaussian"
BLUR_SIGMA_DEFAULT = 4.0  # px at 128: wider than DRIVE's widest vessels there (~4 px), so they are smeared away


class EdgeChannelRole(str, Enum):
    input_and_target = "input_and_target"
    target_only = "target_only"


@dataclass(frozen=True)
class EdgeChannel:
    family: str = "meijering"
    channel: str = "green"
    options: dict = field(default_factory=dict)
    role: EdgeChannelRole = EdgeChannelRole.input_and_target

    @property
    def in_channels(self) -> int:
        return 4 if self.role is EdgeChannelRole.input_and_target else 3

    @torch.no_grad()
    def edge_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 1, H, W): the map, scaled to [0, 1] per image."""
        if self.family == BLUR_FAMILY:
            blurred = gaussian_blur(select_channel(x, self.channel), **self.options)
            lo = blurred.amin(dim=(-2, -1), keepdim=True)
            hi = blurred.amax(dim=(-2, -1), keepdim=True)
            return (blurred - lo) / (hi - lo).clamp_min(1e-8)
        return normalized_edge_map(x, self.family, self.channel, **self.options)

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 4, H, W): what the autoencoder must reconstruct, RGB plus the map."""
        return torch.cat([x, self.edge_map(x)], dim=1)

    def pair(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(model input, reconstruction target) of RGB images x."""
        target = self.target(x)
        return (target if self.role is EdgeChannelRole.input_and_target else x), target

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the model reads at test time: RGB plus the map, or RGB alone (target_only)."""
        return self.target(x) if self.role is EdgeChannelRole.input_and_target else x


def input_and_target(edge: EdgeChannel | None, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(model input, reconstruction target) of RGB images x: both x without an edge channel."""
    return (x, x) if edge is None else edge.pair(x)


def parse_edge_channel(raw: dict) -> EdgeChannel:
    """Validate `model.edge_channel: {family, channel, role, <filter options>}` with the
    same checks as the `edge` loss term (`edge_filters.filter_options`)."""
    if not isinstance(raw, dict):
        raise ValueError(f"edge_channel: expected a mapping like {{family: meijering, channel: green}}, got {raw!r}")
    raw = dict(raw)
    family, channel = raw.pop("family", "meijering"), raw.pop("channel", "green")
    role_raw = raw.pop("role", EdgeChannelRole.input_and_target.value)
    try:
        role = EdgeChannelRole(role_raw)
    except ValueError:
        raise ValueError(f"edge_channel.role: must be one of {[r.value for r in EdgeChannelRole]}, "
                         f"got {role_raw!r}") from None
    if channel not in SINGLE_CHANNELS:
        raise ValueError(f"edge_channel.channel: must be one of {list(SINGLE_CHANNELS)} (one extra channel), got {channel!r}")
    if "distance" in raw:
        raise ValueError("edge_channel: 'distance' does not apply (the channel is reconstructed by edge_map_l1)")
    if family == BLUR_FAMILY:
        unknown = sorted(set(raw) - {"sigma"})
        if unknown:
            raise ValueError(f"edge_channel: family {BLUR_FAMILY} takes only 'sigma', got {unknown}")
        try:
            sigma = check_sigma(raw.get("sigma", BLUR_SIGMA_DEFAULT))
        except (TypeError, ValueError) as e:
            raise ValueError(f"edge_channel.sigma: {e}") from None
        return EdgeChannel(family, channel, {"sigma": sigma}, role)
    if family not in FAMILIES:
        raise ValueError(f"edge_channel.family: must be one of {[*FAMILIES, BLUR_FAMILY]}, got {family!r}")
    try:
        options = filter_options(family, channel, "edge_channel", **raw)
    except TypeError as e:
        raise ValueError(f"edge_channel: {e}") from None
    return EdgeChannel(family, channel, options, role)
