"""Patch Betti errors (ablate.evaluate.topology): a break and a merge do not cancel."""

from __future__ import annotations

import numpy as np

from ablate.evaluate.morphology import agreement
from ablate.evaluate.topology import PATCH, patch_betti_errors


def _maps():
    ref = np.zeros((128, 128), bool)
    ref[20:23, 5:60] = True  # two parallel vessels in the left half ...
    ref[30:33, 5:60] = True
    ref[90:93, 70:125] = True  # ... and one in the lower right
    test = ref.copy()
    test[20:33, 30:33] = True  # merge the two on the left (one component fewer)
    test[90:93, 96:99] = False  # break the one on the right (one more)
    return ref, test


def test_a_break_and_a_merge_cancel_globally_but_not_per_patch():
    ref, test = _maps()
    a = agreement(ref, test)
    assert a["betti0_error"] == 0  # the global counts cancel ...
    assert a[f"betti0_patch{PATCH}_error"] == 2  # ... the per-tile ones do not
    assert PATCH == 64


def test_patch_holes_and_identity():
    ref, _ = _maps()
    ring = ref.copy()
    ring[100:120, 10:30] = True
    ring[105:115, 15:25] = False  # a hole inside one tile
    assert patch_betti_errors(ref, ref) == {"betti0_patch64_error": 0.0, "betti1_patch64_error": 0.0}
    out = patch_betti_errors(ref, ring)
    assert out["betti1_patch64_error"] == 1 and out["betti0_patch64_error"] == 1
