"""Vessel sharpness and contrast measured on the images themselves, reconstruction / original.

The paper's claim for the edge term is sharper vessels (docs/paper.md). Vessel maps cannot
show it: a segmenter that standardises each image (the U-Net) or re-equalises and re-thresholds
it (the ridge fallback: CLAHE + Otsu) finds the same vessels in a reconstruction with half the
vessel contrast. These two numbers read the green channel (where retinal vessels have their
contrast) of both images at the same pixels, those of the ORIGINAL's vessel map R, so they do
not depend on what the segmenter makes of the reconstruction:

vessel_sharpness = S(reconstruction) / S(original), with
    S(g) = - sum over pixels of grad g . grad m  /  sum of |grad m|,
    m = R smoothed by a Gaussian (sigma SMOOTH_PX), grad = Sobel / 8 (a unit step reads 1).
    grad m is non-zero only across vessel borders and points into the vessel, so S is the mean
    directional derivative of the green channel across the border, weighted by how much border
    each pixel carries: how steeply the image falls from background into a (dark) vessel. A
    blurred border spreads the fall and S drops; halving the vessel contrast halves S. Noise
    adds gradients in random directions, which cancel in the signed sum (unlike a mean
    gradient magnitude, which noise inflates). 1 = as sharp as the original; > 1 steeper.

vessel_contrast = C(reconstruction) / C(original), with
    C(g) = mean of g over the background ring (pixels 2-3 px outside R: R dilated by 3 minus
    R dilated by 1) - mean of g over R. The vessel-to-background contrast of the green channel.

Both are taken only inside the FOV less its rim band (ablate.segmenter.ridge.inside_rim), so
the FOV edge's own step does not count. NaN when R has no pixel there or the original's S or C
is not positive (no dark vessels to speak of). Green is in [0, 1]; the ratios are unitless.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from ablate.metric_info import Better, MetricInfo

# reconstruction / original: a reconstruction blurs, so higher (towards 1) is better; above 1 is
# steeper than the original.
VESSEL_SHARPNESS = MetricInfo("vessel_sharpness", Better.HIGHER,
                              about="green-channel slope at the original's vessel borders, reconstruction / original")
VESSEL_CONTRAST = MetricInfo("vessel_contrast", Better.HIGHER,
                             about="vessel-to-background contrast, reconstruction / original")
METRICS = (VESSEL_SHARPNESS, VESSEL_CONTRAST)

SMOOTH_PX = 1.0


def _grad(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return ndi.sobel(a, 0) / 8, ndi.sobel(a, 1) / 8


def border_slope(green: np.ndarray, vessel: np.ndarray, inside: np.ndarray) -> float:
    """S(g): the weighted mean fall of `green` across the borders of `vessel` (module doc)."""
    m = ndi.gaussian_filter(vessel.astype(np.float64), SMOOTH_PX)
    my, mx = _grad(m)
    gy, gx = _grad(np.asarray(green, np.float64))
    w = np.hypot(my, mx) * inside
    total = w.sum()
    if total <= 0:
        return math.nan
    return float(-((gy * my + gx * mx) * inside).sum() / total)


def contrast(green: np.ndarray, vessel: np.ndarray, inside: np.ndarray) -> float:
    """C(g): mean green of the background ring 2-3 px outside `vessel` minus that inside it."""
    core = vessel & inside
    ring = ndi.binary_dilation(vessel, iterations=3) & ~ndi.binary_dilation(vessel, iterations=1) & inside
    if not core.any() or not ring.any():
        return math.nan
    g = np.asarray(green, np.float64)
    return float(g[ring].mean() - g[core].mean())


def _ratio(a: float, b: float) -> float:
    return a / b if (not math.isnan(b) and b > 0 and not math.isnan(a)) else math.nan


def sharpness(original_green: np.ndarray, recon_green: np.ndarray, reference_map: np.ndarray,
              fov: np.ndarray) -> dict[str, float]:
    """{"vessel_sharpness", "vessel_contrast"} of a reconstruction against its original, (H, W) green
    channels in [0, 1], the original's (H, W) bool vessel map and the FOV."""
    from ablate.segmenter.ridge import inside_rim

    vessel = np.asarray(reference_map, bool)
    inside = inside_rim(np.asarray(fov, bool))
    return {
        "vessel_sharpness": _ratio(border_slope(recon_green, vessel, inside),
                                   border_slope(original_green, vessel, inside)),
        "vessel_contrast": _ratio(contrast(recon_green, vessel, inside), contrast(original_green, vessel, inside)),
    }
