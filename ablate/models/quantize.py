"""Vector quantiser (VQ-VAE / taming VectorQuantizer2) with a straight-through estimator."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class VectorQuantizer(nn.Module):
    """Nearest-codebook quantisation of (B, D, H, W) latents.

    Loss with `legacy=True` (taming's default, used by the paper's code):
        ||sg[z_q] - z||^2 + beta * ||z_q - sg[z]||^2
    and with `legacy=False` the VQ-VAE paper's form:
        beta * ||sg[z_q] - z||^2 + ||z_q - sg[z]||^2
    """

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25, legacy: bool = True):
        super().__init__()
        if n_embed < 2 or embed_dim < 1:
            raise ValueError(f"codebook needs n_embed >= 2 and embed_dim >= 1, got {n_embed}x{embed_dim}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.n_embed, self.embed_dim, self.beta, self.legacy = n_embed, embed_dim, beta, legacy
        self.embedding = nn.Embedding(n_embed, embed_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_embed, 1.0 / n_embed)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        b, d, h, w = z.shape
        if d != self.embed_dim:
            raise ValueError(f"latent has {d} channels, codebook dimension is {self.embed_dim}")
        # fp32 whatever the autocast (train.precision): ||z||^2 - 2 z.e + ||e||^2 cancels
        # catastrophically in bf16's 8-bit mantissa and argmin would pick other codes; the
        # commitment losses and the straight-through sum z + (zq - z) stay fp32 for the same reason.
        with torch.autocast(z.device.type, enabled=False):
            z = z.float()
            flat = z.permute(0, 2, 3, 1).reshape(-1, d)
            e = self.embedding.weight.float()
            dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(1)[None]
            idx = dist.argmin(1)
            zq = self.embedding(idx).float().view(b, h, w, d).permute(0, 3, 1, 2)
            commit = F.mse_loss(z, zq.detach())
            codebook = F.mse_loss(zq, z.detach())
            loss = commit + self.beta * codebook if self.legacy else self.beta * commit + codebook
            zq = z + (zq - z).detach()  # straight-through: decoder gradient flows to the encoder
        counts = torch.bincount(idx, minlength=self.n_embed).float()
        probs = counts / counts.sum()
        perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        return zq, {"codebook": loss, "perplexity": perplexity.detach(), "codes_used": (counts > 0).float().sum().detach(),
                    "indices": idx.view(b, h, w)}

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, H, W) -> quantised latents (B, D, H, W), fp32: what `forward` returns
        for latents that quantise to those codes (a prior's samples decode through this)."""
        if indices.is_floating_point() or indices.dim() != 3:
            raise ValueError(f"expected integer code indices (B, H, W), got {indices.dtype} {tuple(indices.shape)}")
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= self.n_embed:
            raise ValueError(f"code indices must be in [0, {self.n_embed}) (the codebook size), got [{lo}, {hi}]")
        return self.embedding(indices).float().permute(0, 3, 1, 2)
