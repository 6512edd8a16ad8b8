"""What a search space says about one loss term, carried by value to the workers.

Torch-free, so reading a search space does not import the loss terms themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Options every term takes besides its own (one definition: the config parser, the
# registry's option check and `ablate losses` all read this).
COMMON_OPTIONS: dict[str, str] = {
    "weight": "multiplies the term (>= 0)",
    "start_step": "the term is off (contributes 0) before this step",
    "adaptive": "taming's gradient-norm balance at the decoder's last layer",
}


@dataclass(frozen=True)
class LossSpec:
    name: str
    weight: float = 1.0
    start_step: int = 0  # the term is off (contributes 0) before this step
    adaptive: bool = False  # taming-style gradient-norm balancing at the decoder's last layer
    options: dict = field(default_factory=dict)  # the term's own options (its factory's keywords)


def split_options(body: dict) -> tuple[dict, dict]:
    """(common options, the term's own options) of one term's mapping in a search space."""
    common = {k: v for k, v in body.items() if k in COMMON_OPTIONS}
    return common, {k: v for k, v in body.items() if k not in COMMON_OPTIONS}
