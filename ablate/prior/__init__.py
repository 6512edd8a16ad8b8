"""A trial's synthesis stage: its autoencoder's codes, a transformer prior trained on them
with Ray Train, and samples drawn from it (stage.py says the order; `ablate sample` draws more)."""
