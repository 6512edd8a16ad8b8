"""Choosing the next code from a prior's logits: temperature, top-k, then one multinomial draw,
as taming-transformers samples its GPT; and the checks of the sampling arguments."""

from __future__ import annotations

import math

import torch

from ablate.errors import InvalidInput


def check_sampling_args(n: int, top_k: int | None, temperature: float, vocab: int) -> None:
    """InvalidInput naming the argument when a sampling request cannot be met.

    Args:
        n: number of grids to draw.
        top_k: keep only the k most likely codes at each step (None: all).
        temperature: logits are divided by it before the softmax.
        vocab: codebook size of the prior.
    """
    if not _is_int(n) or n < 1:
        raise InvalidInput(f"n: the number of samples must be an integer >= 1, got {n!r}")
    if top_k is not None and (not _is_int(top_k) or not 1 <= top_k <= vocab):
        raise InvalidInput(f"top_k: must be None or an integer in [1, {vocab}] (the codebook size), got {top_k!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise InvalidInput(f"temperature: must be a finite number > 0, got {temperature!r}")


def pick_next(logits: torch.Tensor, top_k: int | None, temperature: float,
              generator: torch.Generator | None) -> torch.Tensor:
    """One code per row of logits (B, vocab) -> LongTensor (B,).

    Args:
        logits: unnormalised scores of the next code.
        top_k: keep only the k largest logits (ties with the k-th are kept too); None keeps all.
        temperature: divides the logits (< 1 sharpens the distribution, > 1 flattens it).
        generator: the random stream of the draw (None: torch's global one).
    """
    # fp32 whatever the model's precision: a softmax in bf16 rounds small probabilities away
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
