"""The ridge-filter fallback segmenter (ablate.segmenter.ridge) on a real DRIVE test image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ablate.data.preprocess import preprocess
from ablate.segmenter.protocol import Segmenter
from ablate.segmenter.ridge import RidgeSegmenter
from ablate.segmenter.scores import evaluate_arrays
from ablate.segmenter.unet_file import load_segmenter

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- classical fallback


def test_ridge_segmenter_on_a_real_drive_test_image(drive_dir):
    stem = "01_test"
    p = preprocess(drive_dir / "images" / f"{stem}.tif", 256, fov=drive_dir / "fov" / f"{stem}.gif",
                   vessel=drive_dir / "vessels" / f"{stem}.gif")
    x = torch.from_numpy(p.image).permute(2, 0, 1)[None].float() / 255
    fov = torch.from_numpy(p.fov)[None]
    seg = load_segmenter("ridge")
    assert isinstance(seg, RidgeSegmenter) and isinstance(seg, Segmenter) and seg.name == "ridge:meijering+otsu"
    prob = seg.predict(x, fov)
    assert prob.shape == (1, 256, 256) and prob.min() >= 0 and prob.max() <= 1 and (prob[~fov] == 0).all()
    m = evaluate_arrays(prob.numpy(), p.vessel[None], p.fov[None], seg.threshold)
    # Measured: Dice 0.680, AUC 0.929 (meijering, sigmas 0.5/1/1.5 px at 256, CLAHE, Otsu).
    assert m["dice"] > 0.62 and m["auc"] > 0.9, m
    # `> 0.5` is Otsu's binary map of the response; prob is increasing in the response.
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    r = seg.response(x[0, 1].numpy(), p.fov)
    inner = ndimage.binary_erosion(p.fov, iterations=3)
    t = threshold_otsu(r[inner])
    assert np.array_equal(prob[0].numpy() > 0.5, (r > t) & p.fov)
    inside = p.fov
    order = np.argsort(r[inside], kind="stable")
    assert (np.diff(prob[0].numpy()[inside][order]) >= -1e-6).all()
    assert load_segmenter("ridge:frangi").name == "ridge:frangi+otsu"
    with pytest.raises(ValueError, match="ridge family"):
        load_segmenter("ridge:sobel")
