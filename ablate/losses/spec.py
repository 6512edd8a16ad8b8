"""The options every loss term takes besides its own, and how a term's mapping in a search
space splits into the two. The term's spec itself (`LossSpec`) is in `ablate.specs`.

Torch-free, so reading a search space does not import the loss terms themselves.
"""

from __future__ import annotations

# Options every term takes besides its own (one definition: the config parser, the
# registry's option check and `ablate losses` all read this).
COMMON_OPTIONS: dict[str, str] = {
    "weight": "multiplies the term (>= 0)",
    "start_step": "the term is off (contributes 0) before this step",
    "adaptive": "taming's gradient-norm balance at the decoder's last layer",
}


def split_options(body: dict) -> tuple[dict, dict]:
    """(common options, the term's own options) of one term's mapping in a search space."""
    common = {k: v for k, v in body.items() if k in COMMON_OPTIONS}
    return common, {k: v for k, v in body.items() if k not in COMMON_OPTIONS}
