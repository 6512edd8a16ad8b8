"""Frozen feature networks: VGG16 for LPIPS, RETFound / other ViTs, the FID Inception.
Their weights come from `ablate.weights` (fetched, verified by sha256, cached)."""
