"""The training stream's patches (ablate.segmenter.patches): the sampler and its augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ablate.segmenter.camera import CameraJitter
from ablate.segmenter.patches import PatchSampler, WholeImages, augment_image
from ablate.segmenter.unet import fov_stats_numpy
from tests.helpers.segmentation import synthetic_vessel_batch

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- training stream

def _row(size=64, seed=0):
    from ablate.data.preprocess import png_bytes

    img, fov, vessel = synthetic_vessel_batch(1, size, seed)
    u8 = (img[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    return u8, fov[0].numpy(), vessel[0].numpy(), {"image": png_bytes(u8), "fov": png_bytes(fov[0].numpy()),
                                                   "vessel": png_bytes(vessel[0].numpy())}


def test_patch_sampler_and_augmentation():
    u8, fov, vessel, row = _row()
    batch = {k: np.array([v, v], dtype=object) for k, v in row.items()}
    out = PatchSampler(32, 5)(batch)
    assert out["image"].shape == (10, 3, 32, 32) and out["image"].dtype == np.uint8
    assert out["fov"].shape == out["vessel"].shape == (10, 32, 32) and out["stats"].shape == (10, 6)
    assert set(np.unique(out["vessel"])) <= {0, 255} and not (out["vessel"] > out["fov"]).any()
    assert out["fov"].reshape(10, -1).mean(1).min() > 0  # centred on FOV pixels
    # Without jitter the stats are the whole image's and patches are crops of it (up to flips/turns).
    plain = PatchSampler(32, 3, jitter=None)(batch)
    np.testing.assert_allclose(plain["stats"][0], fov_stats_numpy(u8, fov), atol=1e-6)
    whole = u8.transpose(2, 0, 1)
    p = plain["image"][0]
    variants = [np.rot90(p, -k, axes=(1, 2)) for k in range(4)] + [np.rot90(p[..., ::-1], -k, axes=(1, 2)) for k in range(4)]
    found = any((whole[:, r:r + 32, c:c + 32] == v).all() for v in variants for r in range(33) for c in range(33))
    assert found
    rng = np.random.default_rng(0)
    a_img, a_fov, a_ves = augment_image(u8, fov, vessel, rng, CameraJitter())
    assert a_img.shape == u8.shape and a_img.dtype == np.uint8 and not (a_ves & ~a_fov).any()
    assert (a_img[~a_fov] == 0).all() and not np.array_equal(a_img, u8)
    w = WholeImages()(batch)
    assert w["image"].shape == (2, 3, 64, 64) and w["fov"].shape == (2, 64, 64)
