"""Models: taming-style convolutional autoencoders (VQ or plain), presets, the edge
channel, the discriminator, and the grid's checkpoint format (checkpoint.py).

The names below load on first use, so a module that only needs the checkpoint
format's constants (the report's command line) does not import torch.
"""

__all__ = ["PRESETS", "Autoencoder", "build_model"]


def __getattr__(name: str):
    if name == "Autoencoder":
        from ablate.models.autoencoder import Autoencoder

        return Autoencoder
    if name in ("PRESETS", "build_model"):
        from ablate.models import presets

        return getattr(presets, name)
    raise AttributeError(f"module 'ablate.models' has no attribute {name!r}")
