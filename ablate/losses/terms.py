"""Every loss family, imported so it registers itself: `LOSSES` from here is complete."""

from ablate.losses import adversarial, codebook, edge, foundation, perceptual, pixel, structural  # noqa: F401
from ablate.losses.registry import LOSSES

__all__ = ["LOSSES"]
