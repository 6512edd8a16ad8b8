"""Convolutional autoencoder in the manner of taming-transformers' VQModel.

Encoder: conv_in -> per level (num_res_blocks ResnetBlocks [+ attention], downsample
except at the last level) -> mid (Res, Attn, Res) -> norm/SiLU/conv_out to z_channels.
Decoder mirrors it with num_res_blocks + 1 blocks per level and a linear conv_out
(no sigmoid, as in the paper's config). Bottleneck: "vq" (1x1 quant_conv ->
VectorQuantizer -> 1x1 post_quant_conv) or "none" (a plain autoencoder with the
same 1x1 convolutions, so the two differ only in quantisation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ablate.models.blocks import AttnBlock, Downsample, ResnetBlock, Upsample, norm
from ablate.models.quantize import VectorQuantizer


@dataclass(frozen=True)
class ArchConfig:
    ch: int = 64
    ch_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 1
    attn_resolutions: tuple[int, ...] = (8,)
    z_channels: int = 256
    bottleneck: str = "vq"  # "vq" or "none"
    n_embed: int = 512
    embed_dim: int = 128
    beta: float = 0.25
    legacy: bool = True
    dropout: float = 0.0
    in_channels: int = 3  # 4 when an edge map rides along as an extra input channel
    out_channels: int | None = None  # None: as many as in; 4 with in 3 when the map is a target only
    extra: dict = field(default_factory=dict)

    def downsampling(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


class Encoder(nn.Module):
    def __init__(self, a: ArchConfig, resolution: int):
        super().__init__()
        self.conv_in = nn.Conv2d(a.in_channels, a.ch, 3, padding=1)
        chans = [a.ch * m for m in (1, *a.ch_mult)]
        self.down = nn.ModuleList()
        res = resolution
        for i, m in enumerate(a.ch_mult):
            level = nn.Module()
            blocks, attns = nn.ModuleList(), nn.ModuleList()
            cin, cout = chans[i], a.ch * m
            for _ in range(a.num_res_blocks):
                blocks.append(ResnetBlock(cin, cout, a.dropout))
                attns.append(AttnBlock(cout) if res in a.attn_resolutions else nn.Identity())
                cin = cout
            level.blocks, level.attns = blocks, attns
            level.downsample = Downsample(cout) if i != len(a.ch_mult) - 1 else nn.Identity()
            if i != len(a.ch_mult) - 1:
                res //= 2
            self.down.append(level)
        c = a.ch * a.ch_mult[-1]
        self.mid = nn.Sequential(ResnetBlock(c, c, a.dropout), AttnBlock(c), ResnetBlock(c, c, a.dropout))
        self.norm_out = norm(c)
        self.conv_out = nn.Conv2d(c, a.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        level: Any  # a bare nn.Module holding blocks, attns, downsample (set in __init__)
        for level in self.down:
            for block, attn in zip(level.blocks, level.attns):
                h = attn(block(h))
            h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, a: ArchConfig, resolution: int):
        super().__init__()
        c = a.ch * a.ch_mult[-1]
        res = resolution // a.downsampling()
        self.conv_in = nn.Conv2d(a.z_channels, c, 3, padding=1)
        self.mid = nn.Sequential(ResnetBlock(c, c, a.dropout), AttnBlock(c), ResnetBlock(c, c, a.dropout))
        self.up = nn.ModuleList()
        cin = c
        for i in reversed(range(len(a.ch_mult))):
            level = nn.Module()
            blocks, attns = nn.ModuleList(), nn.ModuleList()
            cout = a.ch * a.ch_mult[i]
            for _ in range(a.num_res_blocks + 1):
                blocks.append(ResnetBlock(cin, cout, a.dropout))
                attns.append(AttnBlock(cout) if res in a.attn_resolutions else nn.Identity())
                cin = cout
            level.blocks, level.attns = blocks, attns
            level.upsample = Upsample(cout) if i != 0 else nn.Identity()
            if i != 0:
                res *= 2
            self.up.append(level)
        self.norm_out = norm(cin)
        self.conv_out = nn.Conv2d(cin, a.out_channels or a.in_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        level: Any  # a bare nn.Module holding blocks, attns, upsample (set in __init__)
        for level in self.up:
            for block, attn in zip(level.blocks, level.attns):
                h = attn(block(h))
            h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Autoencoder(nn.Module):
    """forward(x in [0,1], shape (B, C, H, W)) -> (reconstruction, aux).

    aux always has "codebook" (a zero tensor for the plain bottleneck) so the
    codebook loss term works the same for both; VQ adds "perplexity"/"codes_used".
    """

    def __init__(self, arch: ArchConfig, resolution: int):
        super().__init__()
        if resolution % arch.downsampling():
            raise ValueError(f"resolution {resolution} is not divisible by the downsampling factor {arch.downsampling()}")
        if arch.bottleneck not in ("vq", "none"):
            raise ValueError(f"model.bottleneck must be 'vq' or 'none', got {arch.bottleneck!r}")
        self.arch, self.resolution = arch, resolution
        self.encoder = Encoder(arch, resolution)
        self.decoder = Decoder(arch, resolution)
        self.quant_conv = nn.Conv2d(arch.z_channels, arch.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(arch.embed_dim, arch.z_channels, 1)
        self.quantize = VectorQuantizer(arch.n_embed, arch.embed_dim, arch.beta, arch.legacy) if arch.bottleneck == "vq" else None

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's output weight: where adaptive loss weights compare gradient norms."""
        return self.decoder.conv_out.weight

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h = self.quant_conv(self.encoder(x))
        if self.quantize is None:
            return h, {"codebook": h.new_zeros(())}
        return self.quantize(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))

    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        """The code grid (B, h, w) of images x (the model's input channels): what a prior over
        codes learns. ValueError for a model without a codebook (bottleneck 'none')."""
        if self.quantize is None:
            raise ValueError("this autoencoder has no codebook (model.bottleneck 'none'): it has no codes to model")
        return self.encode(x)[1]["indices"]

    def decode_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) decoded from code grids (B, h, w), e.g. a prior's samples."""
        if self.quantize is None:
            raise ValueError("this autoencoder has no codebook (model.bottleneck 'none'): it cannot decode codes")
        return self.decode(self.quantize.lookup(indices))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if x.dim() != 4 or x.shape[1] != self.arch.in_channels:
            raise ValueError(f"expected input (B, {self.arch.in_channels}, H, W), got {tuple(x.shape)}")
        z, aux = self.encode(x)
        return self.decode(z), aux
