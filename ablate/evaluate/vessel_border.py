"""How faithfully a reconstruction keeps the borders of the original's vessels, read on the
green channel (where retinal vessels have their contrast) of both images at the same pixels,
those of the ORIGINAL's vessel map R, so it does not depend on what a segmenter makes of the
reconstruction. Two measures, each best (0) at the original and worse for any departure, up or
down: a reconstruction cannot beat a faithful copy by over-enhancing, sharpening past the
original, or drawing a halo (issue 27 replaced `vessel_sharpness`, a ratio whose "higher is
better" rewarded exactly those).

border_contrast_error = |1 - C(reconstruction) / C(original)|, with
    C(g) = mean of g over the background ring (pixels 2-3 px outside R: R dilated by 3 minus R
    dilated by 1) - mean of g over R: the vessel-to-background contrast. Halving the vessels'
    depth gives 0.5, doubling it 1.0, removing the vessels about 1 (C falls to about 0), a
    bright halo 2-3 px outside the vessels more than 0.

border_width_error = |W(reconstruction) - W(original)| in px, with
    W(g) = the 10-90 % rise distance of the mean green profile across R's borders: profiles are
    sampled along each border pixel's normal (the gradient of R smoothed by a Gaussian of
    sigma SMOOTH_PX, pointing into the vessel) from PROFILE_PX outside to PROFILE_PX inside,
    averaged over the border (noise cancels in the mean), and W is the distance over which the
    mean profile, going inwards, falls from 10 % to 90 % of the way between its outside level
    and its minimum (a thin vessel's far side, past the minimum, does not count). Blur widens it,
    sharpening past the original narrows it; a uniform contrast change leaves it (that is
    border_contrast_error's). A reconstruction whose mean profile falls by less than
    FLAT_SHARE of the original's, or is darkest outside the vessel (no border left), gets the
    floor, the whole profile's span. NaN where the original's own mean profile does not fall into
    its vessels (darkest outside them: no dark border to measure).

Both are taken only inside the FOV less its rim band (ablate.segmenter.ridge.inside_rim), so
the FOV edge's own step does not count. NaN when R has no pixel there or the original itself
has no dark border (C or the profile's fall not positive).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from ablate.metric_info import Better, MetricInfo

BORDER_CONTRAST_ERROR = MetricInfo("border_contrast_error", Better.LOWER,
                                   about="|1 - vessel-to-background contrast of the reconstruction / the original's| "
                                         "at the original's vessels (0 = the original's)",
                                   nan_when="the original's vessel map has no pixel inside the FOV less its rim band, "
                                            "or its vessels are not darker than their surround")
BORDER_WIDTH_ERROR = MetricInfo("border_width_error", Better.LOWER, unit="px",
                                about="|10-90 % rise distance across the original's vessel borders, reconstruction "
                                      "- original| (0 = the original's)",
                                nan_when="the original's vessel map has no pixel inside the FOV less its rim band, or "
                                         "the original's mean profile across its vessel borders has no dark border "
                                         "that falls into the vessels")
METRICS = (BORDER_CONTRAST_ERROR, BORDER_WIDTH_ERROR)

SMOOTH_PX = 1.0  # sigma of the Gaussian that turns R into a smooth border for its normals
PROFILE_PX = 4  # the profile runs this far on each side of the border, in 0.25 px steps
STEP_PX = 0.25
FLAT_SHARE = 0.1  # a mean profile falling less than this share of the original's has no border
WIDTH_FLOOR = 2.0 * PROFILE_PX  # border_width_error of a reconstruction with no border left


def contrast(green: np.ndarray, vessel: np.ndarray, inside: np.ndarray) -> float:
    """C(g): mean green of the background ring 2-3 px outside `vessel` minus that inside it."""
    core = vessel & inside
    ring = ndi.binary_dilation(vessel, iterations=3) & ~ndi.binary_dilation(vessel, iterations=1) & inside
    if not core.any() or not ring.any():
        return math.nan
    g = np.asarray(green, np.float64)
    return float(g[ring].mean() - g[core].mean())


def border_normals(vessel: np.ndarray, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(points (K, 2), unit normals (K, 2) pointing into the vessel) at R's border pixels inside
    the measured region; None without any. A border point sits where the smoothed map crosses
    one half, found as the pixels of R that touch its background (4-neighbours)."""
    m = ndi.gaussian_filter(vessel.astype(np.float64), SMOOTH_PX)
    gy, gx = np.gradient(m)
    edge = vessel & ~ndi.binary_erosion(vessel) & inside
    ys, xs = np.nonzero(edge)
    norm = np.hypot(gy[ys, xs], gx[ys, xs])
    keep = norm > 1e-6
    if not keep.any():
        return None
    ys, xs, norm = ys[keep], xs[keep], norm[keep]
    # R's pixels at its edge lie half a pixel inside the border: step the point out by 0.5 px.
    normals = np.stack([gy[ys, xs] / norm, gx[ys, xs] / norm], 1)
    points = np.stack([ys, xs], 1).astype(np.float64) - 0.5 * normals
    return points, normals


def mean_profile(green: np.ndarray, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """The green channel sampled along every normal from PROFILE_PX outside to PROFILE_PX
    inside the border (linear interpolation), averaged over the border points."""
    offsets = np.arange(-PROFILE_PX, PROFILE_PX + STEP_PX / 2, STEP_PX)
    coords = points[:, None, :] + offsets[None, :, None] * normals[:, None, :]  # (K, T, 2)
    values = ndi.map_coordinates(np.asarray(green, np.float64), [coords[..., 0].ravel(), coords[..., 1].ravel()],
                                 order=1, mode="nearest").reshape(coords.shape[:2])
    return values.mean(0)


def _levels(profile: np.ndarray) -> tuple[float, float, int]:
    """(outside level: the mean of the profile's outer quarter, inside level: its minimum (the
    vessel's darkest, at or near the centre line of a thin vessel), the index of the minimum)."""
    q = len(profile) // 4
    i = int(np.argmin(profile))
    return float(profile[:q].mean()), float(profile[i]), i


def _fall(profile: np.ndarray) -> float:
    """How far the profile falls from its outside level into the vessel."""
    top, bottom, _ = _levels(profile)
    return top - bottom


def rise_distance(profile: np.ndarray) -> float:
    """W: the distance (px) between the points where the profile, going from outside into the
    vessel, has fallen 10 % and 90 % of its way from its outside level to its minimum (linear
    interpolation; only the part before the minimum counts, a thin vessel's far side does not)."""
    top, bottom, last = _levels(profile)
    x = np.arange(len(profile)) * STEP_PX
    falling = profile[:last + 1]

    def crossing(level: float) -> float:
        i = int(np.nonzero(falling <= level)[0][0])  # the minimum itself is at or below every level
        if i == 0:
            return float(x[0])
        a, b = falling[i - 1], falling[i]
        return float(x[i - 1] + (a - level) / (a - b) * STEP_PX)

    return crossing(top - 0.9 * (top - bottom)) - crossing(top - 0.1 * (top - bottom))


def border_errors(original_green: np.ndarray, recon_green: np.ndarray, reference_map: np.ndarray,
                  fov: np.ndarray) -> dict[str, float]:
    """{"border_contrast_error", "border_width_error"} of a reconstruction against its original.

    Args:
        original_green: the original's (H, W) green channel in [0, 1].
        recon_green: the reconstruction's, likewise.
        reference_map: the original's (H, W) bool vessel map (R).
        fov: the (H, W) bool field of view.
    """
    from ablate.segmenter.ridge import inside_rim

    vessel = np.asarray(reference_map, bool)
    inside = inside_rim(np.asarray(fov, bool))
    out = {BORDER_CONTRAST_ERROR.name: math.nan, BORDER_WIDTH_ERROR.name: math.nan}
    c_orig = contrast(original_green, vessel, inside)
    if math.isfinite(c_orig) and c_orig > 0:
        out[BORDER_CONTRAST_ERROR.name] = abs(1.0 - contrast(recon_green, vessel, inside) / c_orig)
    border = border_normals(vessel, inside)
    if border is not None:
        p_orig, p_recon = mean_profile(original_green, *border), mean_profile(recon_green, *border)
        # The original's mean profile must fall into the vessel: darkest at or past the border (the
        # profile's middle), below its outside level. Else it has no dark border to measure: NaN.
        fall, border_at = _fall(p_orig), len(p_orig) // 2
        if fall > 0 and _levels(p_orig)[2] >= border_at:
            w_orig = rise_distance(p_orig)
            # No border left in the reconstruction: too little fall, or darkest outside the vessel.
            flat = _fall(p_recon) < FLAT_SHARE * fall or _levels(p_recon)[2] < border_at
            out[BORDER_WIDTH_ERROR.name] = WIDTH_FLOOR if flat else abs(rise_distance(p_recon) - w_orig)
    return out


__all__ = ["BORDER_CONTRAST_ERROR", "BORDER_WIDTH_ERROR", "METRICS", "border_errors", "contrast", "mean_profile",
           "rise_distance"]
