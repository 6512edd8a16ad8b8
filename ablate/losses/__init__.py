"""Loss terms, one family per file, all registered in LOSSES by name.

`LossSpec` (what a search space says about a term; its home is `ablate.specs`) is
torch-free and imported eagerly; the registry and the composite load the terms (and
torch) on first use, so reading a search space stays cheap.
"""

from ablate.losses.spec import COMMON_OPTIONS
from ablate.specs import LossSpec

__all__ = ["COMMON_OPTIONS", "LOSSES", "CompositeLoss", "LossSpec"]


def __getattr__(name: str):
    if name == "LOSSES":
        from ablate.losses.terms import LOSSES  # every family, registered

        return LOSSES
    if name == "CompositeLoss":
        from ablate.losses.composite import CompositeLoss

        return CompositeLoss
    raise AttributeError(f"module 'ablate.losses' has no attribute {name!r}")
