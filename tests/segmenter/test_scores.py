"""Segmentation scores (ablate.segmenter.scores): ROC AUC against brute-force pairs, Dice counted inside the FOV only."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ablate.segmenter.scores import dice, evaluate_arrays, roc_auc
from tests.helpers.segmentation import synthetic_vessel_batch

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- metrics

def test_roc_auc_matches_brute_force_pairs():
    rng = np.random.default_rng(0)
    for n, levels in ((60, None), (80, 5)):  # continuous scores, then many ties
        s = rng.random(n) if levels is None else rng.integers(0, levels, n).astype(float)
        y = rng.random(n) < 0.3
        pos, neg = s[y], s[~y]
        brute = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg)])
        assert roc_auc(s, y) == pytest.approx(brute, abs=1e-12)
    assert roc_auc([0.1, 0.9], [False, True]) == 1.0
    with pytest.raises(ValueError, match="both"):
        roc_auc([0.1, 0.2], [True, True])


def test_dice_and_evaluate_arrays_count_inside_fov_only():
    assert dice([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert dice([0, 0], [0, 0]) == 1.0
    _, fov, vessel = synthetic_vessel_batch(2, 32)
    prob = vessel.float().numpy().copy()
    prob[~fov.numpy()] = 1.0  # outside the FOV: ignored
    m = evaluate_arrays(prob, vessel.numpy(), fov.numpy(), 0.5)
    assert m["dice"] == 1.0 and m["auc"] == 1.0 and m["dice_mean_per_image"] == 1.0 and m["n_images"] == 2
    assert m["sensitivity"] == 1.0 and m["specificity"] == 1.0 and m["accuracy"] == 1.0
