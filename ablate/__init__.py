"""ablate: loss-function ablations for autoencoder-based retinal image synthesis on Ray."""

__version__ = "0.1.0"
