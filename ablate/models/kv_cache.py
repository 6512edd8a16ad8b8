"""Keys and values of a decoder-only transformer's past tokens, kept so that sampling feeds
one new token per step instead of recomputing the whole prefix (code_prior.CodePrior.sample).

Without the cache, step t of sampling runs every layer over t tokens, so drawing a grid of n
tokens costs O(n^2) token-passes; with it each step runs one token and attends to the stored
keys and values, O(n) token-passes (the attention itself still reads all t keys).
"""

from __future__ import annotations

import torch


class KVCache:
    """Preallocated keys and values for every layer, filled left to right.

    Args:
        layers: number of attention layers.
        batch: sequences sampled together.
        heads: attention heads per layer.
        max_len: the most tokens the cache will hold (the model's sequence length).
        head_dim: width of one head.
        like: a tensor whose dtype and device the cache takes.
    """

    def __init__(self, layers: int, batch: int, heads: int, max_len: int, head_dim: int, like: torch.Tensor):
        shape = (layers, batch, heads, max_len, head_dim)
        self.keys = like.new_empty(shape)
        self.values = like.new_empty(shape)
        self.max_len = max_len
        # Tokens stored so far; every layer holds the same tokens, so one count serves all,
        # and it moves on only once the last layer has appended (advance).
        self.length = 0

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new tokens' keys and values (B, heads, T, head_dim) for `layer` and return
        that layer's keys and values of all tokens so far, the new ones included.

        Args:
            layer: index of the attention layer.
            k: keys of the new tokens.
            v: values of the new tokens.
        """
        t = k.shape[2]
        end = self.length + t
        if end > self.max_len:
            raise ValueError(f"KV cache full: {self.length} tokens stored, {t} more do not fit in {self.max_len}")
        self.keys[layer, :, :, self.length:end] = k
        self.values[layer, :, :, self.length:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, t: int) -> None:
        """Count `t` new tokens as stored, once every layer has appended them.

        Args:
            t: number of tokens the step fed.
        """
        self.length += t
