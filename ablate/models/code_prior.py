"""A prior over a VQ autoencoder's code grid: a decoder-only transformer that predicts each
code of the raster-ordered grid from a start (or condition) token and the codes before it,
as taming-transformers' Net2NetTransformer does with its GPT. Sampling it, then decoding the
codes with the autoencoder, synthesises images rather than reconstructing them.

The authors' code carries such a prior (configs/transformers/conditional.yaml of their
repository): 12 layers, 8 heads, width 512, 512 codes, block size 1025 (a 32x32 grid and
one condition token), pkeep 0.9, base learning rate 4.5e-6; CodePriorConfig's defaults are
those settings. Whether the paper's synthetic images came from it is not known.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ablate.errors import InvalidInput
from ablate.models.code_sampling import check_sampling_args, pick_next
from ablate.models.kv_cache import KVCache
from ablate.models.transformer_blocks import Block

# The authors' base_learning_rate. taming multiplies it by batch size x GPUs x gradient
# accumulation to get the optimiser's rate; the trainer that uses this must do the same.
AUTHORS_BASE_LR = 4.5e-6


@dataclass(frozen=True)
class CodePriorConfig:
    """The prior's shape. Defaults are the authors' settings.

    Args:
        vocab: codebook size (the autoencoder's n_embed).
        n_positions: codes per grid (h x w of the latent, 32x32 for paper256).
        n_conditions: number of condition labels; 0 makes the prior unconditional with one
            learned start token. The authors conditioned on 30 k-means clusters of UK Biobank
            tabular fields, which have no counterpart here, so the default is 0.
        layers: transformer blocks.
        heads: attention heads per block (a divisor of width).
        width: embedding width.
        dropout: dropout on embeddings, attention and residuals in training (0 in taming's
            GPT, which the authors' config does not override).
        pkeep: in training, each input code is kept with this probability and otherwise
            replaced by a uniformly drawn code (the targets stay the true codes); 1 disables it.
    """

    vocab: int = 512
    n_positions: int = 1024
    n_conditions: int = 0
    layers: int = 12
    heads: int = 8
    width: int = 512
    dropout: float = 0.0
    pkeep: float = 0.9

    def __post_init__(self):
        for name, least in (("vocab", 2), ("n_positions", 1), ("n_conditions", 0), ("layers", 1), ("heads", 1),
                            ("width", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < least:
                raise InvalidInput(f"{name}: must be an integer >= {least}, got {v!r}")
        if self.width % self.heads:
            raise InvalidInput(f"width: {self.width} is not a multiple of heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise InvalidInput(f"dropout: must be in [0, 1), got {self.dropout!r}")
        if not 0.0 < self.pkeep <= 1.0:
            raise InvalidInput(f"pkeep: must be in (0, 1] (1 = no corruption), got {self.pkeep!r}")


class CodePrior(nn.Module):
    """Autoregressive transformer over code grids flattened in raster order, (B, n_positions).

    Position 0 holds the start token (the condition's embedding, or the one learned start
    token when unconditional); position i > 0 holds code i - 1. The output at position i
    predicts code i, so the last code is never an input.

    Args:
        config: the prior's shape.
    """

    def __init__(self, config: CodePriorConfig):
        super().__init__()
        c = self.config = config
        self.tok_emb = nn.Embedding(c.vocab, c.width)
        self.start_emb = nn.Embedding(max(1, c.n_conditions), c.width)
        self.pos_emb = nn.Parameter(torch.zeros(1, c.n_positions, c.width))
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c.width, c.heads, c.dropout) for _ in range(c.layers))
        self.ln_f = nn.LayerNorm(c.width)
        self.head = nn.Linear(c.width, c.vocab, bias=False)
        self.apply(_init_weights)

    def forward(self, codes: torch.Tensor, condition: torch.Tensor | int | None = None) -> torch.Tensor:
        """Logits (B, n_positions, vocab): entry [:, i] predicts codes[:, i] from the start
        token and codes[:, :i].

        Args:
            codes: LongTensor (B, n_positions) of codes in [0, vocab).
            condition: LongTensor (B,) of labels in [0, n_conditions), or one int for all
                rows; None when the prior is unconditional.
        """
        self._check_codes(codes)
        start = self._start(condition, codes.shape[0], codes.device)
        return self._run(torch.cat([start, self.tok_emb(codes[:, :-1])], dim=1))

    def corrupt(self, codes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """In training mode, each code replaced by a uniformly drawn one with probability
        1 - pkeep (a draw may give the same code back); in eval mode, or with pkeep 1, the
        codes unchanged.

        Args:
            codes: LongTensor of codes.
            generator: the random stream of the corruption (None: torch's global one).
        """
        if not self.training or self.config.pkeep >= 1.0:
            return codes
        keep = torch.rand(codes.shape, generator=generator, device=codes.device) < self.config.pkeep
        drawn = torch.randint(self.config.vocab, codes.shape, generator=generator, device=codes.device)
        return torch.where(keep, codes, drawn)

    def loss(self, codes: torch.Tensor, condition: torch.Tensor | int | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean cross-entropy of the true codes given corrupted inputs (corrupt; training only).

        Args:
            codes: LongTensor (B, n_positions) of codes in [0, vocab).
            condition: as in forward.
            generator: the random stream of the pkeep corruption.
        """
        self._check_codes(codes)
        logits = self(self.corrupt(codes, generator), condition)
        return F.cross_entropy(logits.reshape(-1, self.config.vocab), codes.reshape(-1))

    @torch.no_grad()
    def sample(self, n: int, condition: torch.Tensor | int | None = None, top_k: int | None = None,
               temperature: float = 1.0, generator: torch.Generator | None = None,
               use_cache: bool = True) -> torch.Tensor:
        """Draw n code grids, LongTensor (n, n_positions) on the model's device, in raster order.

        Runs in eval mode (no dropout) and restores the module's mode afterwards.

        Args:
            n: number of grids.
            condition: LongTensor (n,) of labels, or one int for all; None when unconditional.
            top_k: keep only the k most likely codes at each step; None keeps all, 1 is greedy.
            temperature: divides the logits before the softmax; must be > 0.
            generator: the random stream of the draws (on the model's device).
            use_cache: feed one new token per step and keep past keys and values (KVCache);
                False recomputes the whole prefix every step, the slow reference.
        """
        c = self.config
        check_sampling_args(n, top_k, temperature, c.vocab)
        device = self.pos_emb.device
        start = self._start(condition, n, device)
        out = torch.empty(n, c.n_positions, dtype=torch.long, device=device)
        was_training = self.training
        self.eval()
        try:
            cache = KVCache(c.layers, n, c.heads, c.n_positions, c.width // c.heads, like=start) if use_cache else None
            for t in range(c.n_positions):
                if cache is None:  # the whole prefix: start token and codes 0..t-1
                    logits = self._run(torch.cat([start, self.tok_emb(out[:, :t])], dim=1))
                else:  # only the newest token, at its position t
                    new = start if t == 0 else self.tok_emb(out[:, t - 1:t])
                    logits = self._run(new, offset=t, cache=cache)
                out[:, t] = pick_next(logits[:, -1], top_k, temperature, generator)
        finally:
            self.train(was_training)
        return out

    def _run(self, x: torch.Tensor, offset: int = 0, cache: KVCache | None = None) -> torch.Tensor:
        """Embedded tokens (B, T, width) at positions offset..offset+T-1 -> logits (B, T, vocab)."""
        x = self.drop(x + self.pos_emb[:, offset:offset + x.shape[1]])
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        if cache is not None:
            cache.advance(x.shape[1])
        return self.head(self.ln_f(x))

    def _start(self, condition: torch.Tensor | int | None, batch: int, device: torch.device) -> torch.Tensor:
        """The start token's embedding (batch, 1, width), checking `condition` against the config."""
        k = self.config.n_conditions
        if k == 0:
            if condition is not None:
                raise InvalidInput("condition: this prior is unconditional (n_conditions = 0); pass None")
            labels = torch.zeros(batch, dtype=torch.long, device=device)
        else:
            if condition is None:
                raise InvalidInput(f"condition: this prior is conditional (n_conditions = {k}); pass labels in [0, {k})")
            if isinstance(condition, int) and not isinstance(condition, bool):
                labels = torch.full((batch,), condition, dtype=torch.long, device=device)
            elif isinstance(condition, torch.Tensor) and not condition.is_floating_point() \
                    and not condition.is_complex() and condition.dtype != torch.bool:
                if tuple(condition.shape) != (batch,):
                    raise InvalidInput(f"condition: expected shape ({batch},), one label per row, "
                                       f"got {tuple(condition.shape)}")
                labels = condition.to(device=device, dtype=torch.long)
            else:
                raise InvalidInput(f"condition: expected an int or an integer tensor, got {condition!r}")
            if batch and not (0 <= int(labels.min()) and int(labels.max()) < k):
                raise InvalidInput(f"condition: labels must be in [0, {k}), got values in "
                                   f"[{int(labels.min())}, {int(labels.max())}]")
        return self.start_emb(labels)[:, None]

    def _check_codes(self, codes: torch.Tensor) -> None:
        c = self.config
        if not isinstance(codes, torch.Tensor) or codes.is_floating_point() or codes.is_complex() \
                or codes.dtype == torch.bool:
            raise InvalidInput(f"codes: expected an integer tensor (B, {c.n_positions}), got "
                               f"{type(codes).__name__} {getattr(codes, 'dtype', '')}")
        if codes.dim() != 2 or codes.shape[1] != c.n_positions or codes.shape[0] < 1:
            raise InvalidInput(f"codes: expected shape (B, {c.n_positions}) (the grid flattened in raster order), "
                               f"got {tuple(codes.shape)}")
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi >= c.vocab:
            raise InvalidInput(f"codes: values must be in [0, {c.vocab}) (the codebook size), got [{lo}, {hi}]")


def _init_weights(module: nn.Module) -> None:
    # taming's GPT initialisation: N(0, 0.02) weights, zero biases, unit LayerNorms
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)

