"""Learning-rate schedules shared by the programs that train with one (fm, segmenter)."""

from __future__ import annotations

import math


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """Multiplier of the base lr for optimizer step `step` (0-based): linear warm-up over
    `warmup` steps, then half-cycle cosine decay to 0 at `steps` (MAE's schedule)."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))
