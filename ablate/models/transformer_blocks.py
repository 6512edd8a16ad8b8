"""Pre-LN blocks of a decoder-only (GPT) transformer, as in taming-transformers' mingpt:
causal self-attention and a 4x GELU MLP, each behind a LayerNorm and added back to the
residual stream. Attention can read and extend a KVCache (kv_cache.py) for sampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ablate.models.kv_cache import KVCache


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where each token sees itself and the tokens before it.

    Args:
        width: embedding width (a multiple of `heads`).
        heads: attention heads.
        dropout: dropout on the attention weights and on the output, in training only.
    """

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        """x (B, T, width) -> (B, T, width).

        Args:
            x: the tokens' residual stream.
            cache: when given, the new tokens' keys and values are stored in it and the
                tokens attend to every stored token as well as to each other.
            layer: this layer's index in the cache.
        """
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            # SDPA's is_causal aligns its mask to the top left when there are more keys than
            # queries, which is wrong for new tokens after stored ones; one new token at a time
            # needs no mask at all (every stored token is in its past), so only that is allowed.
            if cache.length and t != 1:
                raise ValueError(f"a KV cache holding {cache.length} tokens takes one new token per step, got {t}")
            k, v = cache.append(layer, k, v)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))


class Block(nn.Module):
    """x + attn(ln(x)), then x + mlp(ln(x)).

    Args:
        width: embedding width.
        heads: attention heads.
        dropout: dropout in attention and after the MLP, in training only.
    """

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        """x (B, T, width) -> (B, T, width).

        Args:
            x: the tokens' residual stream.
            cache: passed on to the attention (see CausalSelfAttention.forward).
            layer: this block's index in the cache.
        """
        x = x + self.attn(self.ln1(x), cache, layer)
        return x + self.mlp(self.ln2(x))
