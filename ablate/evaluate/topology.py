"""Betti errors on patches: topology errors that do not cancel.

``agreement``'s betti0_error / betti1_error are differences of whole-image counts
(components, holes), so a vessel broken in one place and two vessels merged in another
give 0. Following the clDice / Betti-matching literature (Shit et al., CVPR 2021;
Stucki et al., ICML 2023 report Betti errors on patches of 48-64 px), the map is
tiled into non-overlapping PATCH x PATCH squares (the last row / column of tiles is
whatever is left), the counts are taken inside each tile on its own, and the absolute
differences are summed over the tiles:

    betti0_patch64_error = sum over tiles of |components(R_tile) - components(T_tile)|
    betti1_patch64_error = sum over tiles of |holes(R_tile) - holes(T_tile)|

components: 8-connected vessel components; holes: 4-connected background components
not touching the tile's border (the conventions of ablate.evaluate.morphology). The
patch size, 64 px, is in the names. A sum (not a mean over tiles), so it stays an error
count per image, comparable to the global ones; it is at least the global error.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ablate.metric_info import Better, MetricInfo

BETTI0_PATCH64_ERROR = MetricInfo("betti0_patch64_error", Better.LOWER,
                                  about="sum over 64 px tiles of |components(R) - components(T)|")
BETTI1_PATCH64_ERROR = MetricInfo("betti1_patch64_error", Better.LOWER,
                                  about="sum over 64 px tiles of |holes(R) - holes(T)|")
METRICS = (BETTI0_PATCH64_ERROR, BETTI1_PATCH64_ERROR)

PATCH = 64
PATCH_METRICS = (f"betti0_patch{PATCH}_error", f"betti1_patch{PATCH}_error")
_EIGHT = np.ones((3, 3), bool)
_FOUR = ndi.generate_binary_structure(2, 1)


def betti_counts(tile: np.ndarray) -> tuple[int, int]:
    """(components, holes) of one boolean tile."""
    comps = ndi.label(tile, _EIGHT)[1]
    holes = ndi.label(~np.pad(tile, 1), _FOUR)[1] - 1
    return int(comps), int(holes)


def patch_betti_errors(reference: np.ndarray, test: np.ndarray, patch: int = PATCH) -> dict[str, float]:
    """Summed per-tile Betti-0 and Betti-1 errors of `test` against `reference`, (H, W) bool each."""
    r, t = np.asarray(reference, bool), np.asarray(test, bool)
    if r.shape != t.shape or r.ndim != 2:
        raise ValueError(f"patch_betti_errors: need two (H, W) maps of one shape, got {r.shape} and {t.shape}")
    e0 = e1 = 0
    h, w = r.shape
    for y in range(0, h, patch):
        for x in range(0, w, patch):
            rc, rh = betti_counts(r[y : y + patch, x : x + patch])
            tc, th = betti_counts(t[y : y + patch, x : x + patch])
            e0 += abs(rc - tc)
            e1 += abs(rh - th)
    return {f"betti0_patch{patch}_error": float(e0), f"betti1_patch{patch}_error": float(e1)}
