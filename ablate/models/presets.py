"""Named architectures. `paper256` is the configuration of the paper's code
(docs/paper.md §1); the tiny presets exist so tests run at 32-64 px in seconds."""

from __future__ import annotations

import dataclasses

from ablate.models.autoencoder import ArchConfig, Autoencoder

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
    vals = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return dataclasses.replace(PRESETS[preset][0], **vals)


def build_model(preset: str, resolution: int, overrides: dict | None = None, in_channels: int = 3) -> Autoencoder:
    arch = dataclasses.replace(check_overrides(preset, overrides or {}), in_channels=in_channels)
    return Autoencoder(arch, resolution)


def build_for_spec(spec) -> tuple[Autoencoder, "object | None"]:
    """The trial's autoencoder and its input transform (the edge channel, or None)."""
    from ablate.models.edge_channel import parse_edge_channel

    edge = parse_edge_channel(spec.model.edge_channel) if spec.model.edge_channel is not None else None
    model = build_model(spec.model.preset, spec.data.size, spec.model.overrides, in_channels=4 if edge else 3)
    return model, edge
