"""The soft vessel reference: a resized manual mask before it is binarised, and what
binarising lost.

Resizing a vessel mask by a factor D with a box filter gives each output pixel the
fraction of its area that is vessel. The binary reference (the `vessel` column) keeps the
pixels whose fraction is at least 0.5, so a vessel narrower than about D/2 source pixels
vanishes from it while the photograph still shows it (issue 31: at a 6-7x downscale every
vessel under ~3.5 px). The soft reference (the `vessel_soft` column) keeps the fraction
itself, as an 8-bit PNG of round(255 * fraction): its sum over the image is the vessel
area of the full-resolution mask in output pixels, whatever the downscale.

What the binary reference lost against the soft one, per image (shard columns
`vessel_area_lost`, `vessel_length_lost`; summarised per split in manifest.json):

- area: 1 - (binary vessel pixels) / (sum of the soft fractions).
- length: 1 - L(binary) / L(soft > 0), where L is the pixel count of the mask's skeleton
  (skimage's skeletonize: one pixel wide, 8-connected) and `soft > 0` is the soft
  reference's support, every output pixel holding any vessel area: a vessel of any width
  is at least one pixel wide there, so its centreline is kept. Two vessels closer than a
  pixel merge in the support (one line for two), so the length lost can come out slightly
  negative on an image that lost nothing.

Both are 0 for an image whose mask is empty. They are computed from the stored 8-bit soft
reference, so anyone can recompute them from the shards.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# The manifest's description of the vessel references (manifest.json `vessel_reference`).
BINARY = "vessel column: box-filter area fraction >= 0.5 (PIL's 8-bit box resize of the mask, value >= 128)"
SOFT = ("vessel_soft column: box-filter area fraction of the mask per output pixel (float resize), "
        "stored as an 8-bit PNG of round(255 * fraction)")
AREA_LOST = "vessel_area_lost column: 1 - binary vessel pixels / sum of the soft fractions (0 for an empty mask)"
LENGTH_LOST = ("vessel_length_lost column: 1 - skeleton pixels of the binary reference / skeleton pixels of the "
               "soft reference's support (soft > 0); skimage skeletonize (0 for an empty mask)")


def soft_resize(mask: np.ndarray, size: int) -> np.ndarray:
    """The area fraction of `mask` (bool, square) in each pixel of a `size` x `size` grid, as
    uint8 round(255 * fraction), halves up.

    Args:
        mask: the full-resolution vessel mask, already cropped square as the image is.
        size: the output side in pixels.
    """
    # Mode F: both passes of the box filter in float, no 8-bit rounding between them.
    frac = np.asarray(Image.fromarray(mask.astype(np.float32)).resize((size, size), Image.Resampling.BOX))
    return np.clip(np.floor(255.0 * frac.astype(np.float64) + 0.5), 0, 255).astype(np.uint8)


def fraction(soft: np.ndarray) -> np.ndarray:
    """The stored soft reference (uint8) as area fractions in [0, 1] (float32)."""
    return np.asarray(soft, dtype=np.float32) / 255.0


def skeleton_length(mask: np.ndarray) -> int:
    """Pixels of the mask's skeleton (skimage skeletonize): its length in pixels, a diagonal
    step counted as one."""
    from skimage.morphology import skeletonize

    m = np.asarray(mask, dtype=bool)
    return int(skeletonize(m).sum()) if m.any() else 0


def losses(binary: np.ndarray, soft: np.ndarray) -> tuple[float, float]:
    """(area lost, length lost) of the binary reference against the soft one (module docstring).

    Args:
        binary: the binary reference (bool).
        soft: the stored soft reference (uint8, 255 = a whole pixel of vessel).
    """
    mass = float(np.asarray(soft, dtype=np.int64).sum()) / 255.0
    area = 0.0 if mass == 0 else 1.0 - float(np.asarray(binary, bool).sum()) / mass
    full = skeleton_length(np.asarray(soft) > 0)
    length = 0.0 if full == 0 else 1.0 - skeleton_length(binary) / full
    return area, length


def loss_summary(per_split: dict[str, list[tuple[float, float]]]) -> dict[str, dict]:
    """The manifest's per-split summary of the losses: images with a mask, mean and max of
    each loss (6 decimals); a split without any mask is left out.

    Args:
        per_split: split -> [(area lost, length lost)] of its images that have a vessel mask.
    """
    out = {}
    for split, pairs in per_split.items():
        if not pairs:
            continue
        a = np.array([p[0] for p in pairs])
        n = np.array([p[1] for p in pairs])
        out[split] = {"images": len(pairs),
                      "area_lost_mean": round(float(a.mean()), 6), "area_lost_max": round(float(a.max()), 6),
                      "length_lost_mean": round(float(n.mean()), 6), "length_lost_max": round(float(n.max()), 6)}
    return out


def describe(per_split: dict[str, list[tuple[float, float]]]) -> dict:
    """manifest.json's `vessel_reference`: how each reference was made, what the losses are,
    and their summary per split."""
    return {"binary": BINARY, "soft": SOFT, "area_lost": AREA_LOST, "length_lost": LENGTH_LOST,
            "loss": loss_summary(per_split)}
