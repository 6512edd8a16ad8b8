"""Frozen feature networks (VGG16 for LPIPS, RETFound / other ViTs, Inception for FID).

Weights load from a local file or cache only, never from the network. When a
file is absent the caller gets WeightsMissing naming the file and where to put it.
"""

from ablate.errors import AblateError


class WeightsMissing(AblateError, FileNotFoundError):
    """Pretrained weights were asked for but no local file holds them."""
