"""Named architectures. `paper256` is the configuration of the paper's code
(docs/paper.md §1); the tiny presets exist so tests run at 32-64 px in seconds."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ablate.errors import AblateError
from ablate.models.autoencoder import ArchConfig, Autoencoder

if TYPE_CHECKING:
    from ablate.models.edge_channel import EdgeChannel

PRESETS: dict[str, tuple[ArchConfig, str]] = {
    "paper256": (
        ArchConfig(ch=64, ch_mult=(1, 2, 2, 4), num_res_blocks=1, attn_resolutions=(8,), z_channels=256,
                   n_embed=512, embed_dim=128, beta=0.25),
        "the paper's VQ-GAN autoencoder: 256 px -> 32x32x128 latent, 512-entry codebook",
    ),
    "paper256_ae": (
        ArchConfig(ch=64, ch_mult=(1, 2, 2, 4), num_res_blocks=1, attn_resolutions=(8,), z_channels=256,
                   embed_dim=128, bottleneck="none"),
        "paper256 without quantisation (plain autoencoder)",
    ),
    "small": (
        ArchConfig(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(), z_channels=64,
                   n_embed=256, embed_dim=32, beta=0.25),
        "a 4x-downsampling VQ autoencoder for quick 64-128 px experiments",
    ),
    "tiny": (
        ArchConfig(ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), z_channels=16,
                   n_embed=64, embed_dim=8, beta=0.25),
        "a 2x-downsampling VQ autoencoder for tests at 32-64 px",
    ),
    "tiny_ae": (
        ArchConfig(ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), z_channels=16,
                   embed_dim=8, bottleneck="none"),
        "tiny without quantisation",
    ),
}

_FIELDS = {f.name for f in dataclasses.fields(ArchConfig)} - {"extra"}


def check_overrides(preset: str, overrides: dict) -> ArchConfig:
    if preset not in PRESETS:
        import difflib

        close = difflib.get_close_matches(preset, PRESETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown preset {preset!r}.{hint} Known: {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown}; valid: ['preset', {', '.join(map(repr, sorted(_FIELDS)))}]")
    for key, value in overrides.items():
        _check_field(key, value)
    vals: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return dataclasses.replace(PRESETS[preset][0], **vals)


class FieldError(AblateError, ValueError):
    """An override's value cannot build the architecture; the message starts with the field's name."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# What the encoder, decoder and quantiser can be built from (autoencoder.py, quantize.py): sizes are
# positive integers (a level needs a residual block, since Downsample takes the block's output width;
# a codebook at least 2 entries); the dropout a probability below 1. Channel counts need no common
# divisor: blocks.norm picks a group count that divides any width.
_POSITIVE = {"ch": 1, "num_res_blocks": 1, "z_channels": 1, "n_embed": 2, "embed_dim": 1}


def _check_field(key: str, v) -> None:
    """FieldError naming `key` when `v` cannot build the architecture (types and ranges)."""
    if key in _POSITIVE:
        if not _is_int(v) or v < _POSITIVE[key]:
            raise FieldError(f"{key}: must be an integer >= {_POSITIVE[key]}, got {v!r}")
    elif key == "ch_mult":
        if not isinstance(v, (list, tuple)) or not v or not all(_is_int(m) and m >= 1 for m in v):
            raise FieldError(f"ch_mult: must be a non-empty list of integers >= 1 (one per level), got {v!r}")
    elif key == "attn_resolutions":
        if not isinstance(v, (list, tuple)) or not all(_is_int(r) and r >= 1 for r in v):
            raise FieldError(f"attn_resolutions: must be a list of feature-map sizes (integers >= 1), got {v!r}")
    elif key == "bottleneck":
        if v not in ("vq", "none"):
            raise FieldError(f"bottleneck: must be 'vq' or 'none', got {v!r}")
    elif key == "beta":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf"):
            raise FieldError(f"beta: must be a finite number >= 0, got {v!r}")
    elif key == "dropout":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise FieldError(f"dropout: must be a probability in [0, 1), got {v!r}")
    elif key == "legacy" and not isinstance(v, bool):
        raise FieldError(f"legacy: expected true/false, got {v!r}")


def build_model(preset: str, resolution: int, overrides: dict | None = None, in_channels: int = 3,
                out_channels: int | None = None) -> Autoencoder:
    arch = dataclasses.replace(check_overrides(preset, overrides or {}), in_channels=in_channels,
                               out_channels=out_channels)
    return Autoencoder(arch, resolution)


def build_with_edge(preset: str, resolution: int, overrides: dict | None, edge: EdgeChannel | None) -> Autoencoder:
    """The autoencoder for an edge channel (or none): 4 channels in only when the map is an input."""
    if edge is None:
        return build_model(preset, resolution, overrides)
    return build_model(preset, resolution, overrides, in_channels=edge.in_channels, out_channels=4)


def build_for_spec(spec) -> tuple[Autoencoder, EdgeChannel | None]:
    """The trial's autoencoder and its input transform (the edge channel, or None)."""
    from ablate.models.edge_channel import parse_edge_channel

    edge = parse_edge_channel(spec.model.edge_channel) if spec.model.edge_channel is not None else None
    return build_with_edge(spec.model.preset, spec.data.size, spec.model.overrides, edge), edge
