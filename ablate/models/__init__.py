"""Models: taming-style convolutional autoencoders (VQ or plain) and presets."""

from ablate.models.autoencoder import Autoencoder
from ablate.models.presets import PRESETS, build_model

__all__ = ["Autoencoder", "PRESETS", "build_model"]
