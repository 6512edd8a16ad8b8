"""Loss terms, one family per file, all registered in LOSSES by name."""

from ablate.losses import adversarial, codebook, edge, pixel, structural  # noqa: F401  (registration side effects)
from ablate.losses import foundation, perceptual  # noqa: F401  (registration side effects)
from ablate.losses.composite import CompositeLoss
from ablate.losses.registry import LOSSES

__all__ = ["LOSSES", "CompositeLoss"]
