"""Per-image preprocessing (ablate.data.preprocess): EXIF orientation, holes of the FOV filled."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.helpers.images import synthetic_fundus

# ---- finding 8: EXIF orientation -----------------------------------------------------------------

def _upright_fundus():
    """A 96x128 (w x h) photograph with a green block in its upper half: turned, it differs."""
    arr = np.asarray(synthetic_fundus(5, size=(128, 96))).copy()
    arr[30:50, 35:60] = (40, 220, 40)
    return Image.fromarray(arr)


@pytest.mark.bad_input
def test_exif_orientation_is_applied_to_image_and_masks(tmp_path):
    import io

    from ablate.data.preprocess import preprocess

    upright = _upright_fundus()
    png = io.BytesIO()
    upright.save(png, format="PNG")
    # as a camera held sideways stores it: pixels turned, EXIF orientation 6 ("rotate 90 CW to view")
    exif = Image.Exif()
    exif[0x0112] = 6
    jpg = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(jpg, format="JPEG", quality=95, exif=exif)
    fov = tmp_path / "fov.png"  # the field of view, drawn on the upright picture
    Image.fromarray((np.asarray(upright).max(axis=2) > 0).astype(np.uint8) * 255).save(fov)
    want = preprocess(png.getvalue(), 32, fov=fov).image.astype(int)
    got = preprocess(jpg.getvalue(), 32, fov=fov).image.astype(int)  # before: "mask fov.png is 96x128, image is 128x96"
    assert np.abs(got - want).mean() < 4
    turned = preprocess(jpg.getvalue(), 32).image.astype(int)  # FOV by threshold: upright as well
    assert np.abs(turned - want).mean() < 4
    assert np.abs(np.rot90(want, 1) - want).mean() > 10  # the comparison can tell a turned picture


# ---- speed of the per-image work ------------------------------------------------------------

def test_fill_holes_by_labelling_equals_scipy_binary_fill_holes():
    """The faster hole filling of the thresholded FOV must give binary_fill_holes's exact
    result, or a re-prepare would change every dataset made before it."""
    import numpy as np
    from scipy import ndimage

    from ablate.data.preprocess import fill_holes

    rng = np.random.default_rng(0)
    masks = [rng.random(tuple(rng.integers(1, 48, 2))) < rng.uniform(0.2, 0.95) for _ in range(200)]
    masks += [np.ones((5, 7), bool), np.zeros((4, 4), bool), np.pad(np.ones((9, 9), bool), 2) ^ np.pad(np.ones((3, 3), bool), 5)]
    for m in masks:
        out = fill_holes(m)
        assert out.dtype == bool and (out == ndimage.binary_fill_holes(m)).all()
