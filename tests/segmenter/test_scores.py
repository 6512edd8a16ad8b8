"""Segmentation scores (ablate.segmenter.scores): ROC AUC against brute-force pairs, Dice counted inside the FOV only."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ablate.segmenter.scores import dice, evaluate_arrays, roc_auc

pytestmark = pytest.mark.usefixtures("one_thread")


def _lines(n=4, size=32, seed=0):
    """Synthetic fundus-like batch: reddish disc (FOV) with darker random lines (vessels)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    fov = ((yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 < (size / 2 - 1) ** 2).expand(n, -1, -1)
    vessel = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        for _ in range(3):
            a, b = torch.rand(2, generator=g) * 6.28
            d = (torch.cos(a) * (xx - size / 2) + torch.sin(a) * (yy - size / 2) - (b - 3.14) * 2).abs()
            vessel[i] |= d < 1.2
    vessel &= fov
    img = torch.tensor([0.8, 0.45, 0.2]).view(1, 3, 1, 1) * (1 - 0.5 * vessel[:, None].float())
    img = (img + 0.03 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1) * fov[:, None]
    return img, fov.clone(), vessel


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
    _, fov, vessel = _lines(2, 32)
    prob = vessel.float().numpy().copy()
    prob[~fov.numpy()] = 1.0  # outside the FOV: ignored
    m = evaluate_arrays(prob, vessel.numpy(), fov.numpy(), 0.5)
    assert m["dice"] == 1.0 and m["auc"] == 1.0 and m["dice_mean_per_image"] == 1.0 and m["n_images"] == 2
    assert m["sensitivity"] == 1.0 and m["specificity"] == 1.0 and m["accuracy"] == 1.0
