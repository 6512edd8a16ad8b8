"""Test images through a trial's autoencoder and through the vessel segmenter: the
two steps evaluation and the report's image grid share."""

from __future__ import annotations

import numpy as np

from ablate.models.checkpoint import read_checkpoint, rebuild_model


def to_tensor(images: np.ndarray):
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]; a copy (object-store arrays are read-only)."""
    import torch

    return torch.tensor(images).permute(0, 3, 1, 2).float() / 255


def reconstruct(checkpoint, x, device: str = "cpu", batch_size: int = 8, precision: str = "auto"):
    """Reconstructions (N, 3, H, W) in [0, 1], fp32, of images `x` (N, 3, H, W) by the model in the
    checkpoint folder `checkpoint` (local or URI), rebuilt from the file alone. `precision`: the
    training rule (runtime/precision.py): auto = bf16 autocast on CUDA, fp32 on the CPU."""
    import torch

    from ablate.runtime import resolve_precision

    model, edge = rebuild_model(read_checkpoint(checkpoint, device), device)
    autocast = resolve_precision(precision, torch.device(device).type).autocast
    x = x.to(device)
    with torch.no_grad(), autocast():
        # The model's input at test time: the test image alone, or with its edge map (the paper's arm).
        out = [model(edge.model_input(b) if edge else b)[0][:, :3].float() for b in x.split(batch_size)]
    return torch.cat(out).clamp(0, 1)


def to_uint8(x) -> np.ndarray:
    """float (N, 3, H, W) in [0, 1] -> uint8 (N, H, W, 3)."""
    return (x.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)


def reference_levels(seg, images, fov: np.ndarray):
    """The per-image thresholds the segmenter sets on the ORIGINALS (the ridge fallback's Otsu
    levels), to cut their reconstructions at the same level; None for one fixed threshold (U-Net)."""
    import torch

    x = to_tensor(images) if isinstance(images, np.ndarray) else images.cpu()
    return seg.levels(x, torch.tensor(np.array(fov, dtype=bool)))  # a copy: object-store arrays are read-only


def vessel_maps(seg, images, fov: np.ndarray, levels=None) -> np.ndarray:
    """Boolean vessel maps (N, H, W); `images` is uint8 (N, H, W, 3) or float (N, 3, H, W).

    Thresholded at the segmenter's threshold, or at `levels` (from ``reference_levels`` of the
    originals) so an original and its reconstruction are cut at the same level. Nothing in the
    band of ``rim_px`` pixels inside the FOV edge counts as vessel, for any segmenter: the rim
    is a dark edge a ridge filter (and a U-Net on a new camera) can take for a vessel ring.
    """
    import torch

    from ablate.segmenter.ridge import inside_rim

    x = to_tensor(images) if isinstance(images, np.ndarray) else images.cpu()
    f = torch.tensor(np.array(fov, dtype=bool))  # a copy: object-store arrays are read-only
    prob = seg.predict(x, f) if levels is None else seg.predict(x, f, levels=levels)
    return (prob >= seg.threshold).numpy() & inside_rim(fov)
