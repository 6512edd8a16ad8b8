"""AutoMorph's definitions of the global vessel features, selectable beside ours.

ablate.evaluate.morphology deliberately departs from AutoMorph (rmaphoh/AutoMorph,
M3_feature_whole_pic/retipy/retipy/tortuosity_measures.py) where AutoMorph's
definitions are odd, which means its figures cannot be set beside the literature's.
The `automorph` definition set recomputes these features as AutoMorph does (our own
code, written from reading theirs; each says which function it follows):

fractal_dimension   ``fractal_dimension(Z)``: boxes of side k = 2**n, 2**(n-1), ..., 4
                    with n = floor(log2(min(H, W))), on a grid anchored at the image's
                    top-left corner (the last row / column of boxes is whatever is left);
                    N(k) = boxes whose vessel-pixel sum S has 0 < S < k*k (a box that is
                    neither empty nor full, compared with k*k also for a cut edge box);
                    FD = - slope of log N(k) against log k. NaN where some N(k) is 0.
density             ``vessel_density(Z)``: vessel pixels / all pixels of the image (not
                    the FOV).
average_width_area  ``global_cal``: vessel pixels / skeleton pixels (resolution 1); the
                    same as ours, so not recomputed.
distance_tortuosity ``distance_measure_tortuosity``: polyline length / chord on the raw
                    pixel centres (no smoothing).
squared_curvature_tortuosity
                    ``squared_curvature_tortuosity``: despite its name, |trapezoid
                    integral over the sample index of the SIGNED curvature|, curvature
                    k_i = (x' y'' - x'' y') / (x'^2 + y'^2)^1.5 at samples 1..n-2 with
                    x' = (x[i+1] - x[i-1]) / 2 and x'' = (x[i+1] - 2 x[i] + x[i-1]) / 4
                    (retipy.math's derivative1_centered_h1 / derivative2_centered_h1;
                    x = row, y = column).
tortuosity_density  ``tortuosity_density`` with ``_detect_inflection_points``: the
                    "inflection points" are the sign changes (0 counting as a sign) of
                    the column step y[k] - y[k-1], k = 2..n-1, at position k-1; with n of
                    them, (n - 1) / n + (1 / L) * sum over the pieces between consecutive
                    points (the piece after the last one dropped) of (length / chord - 1),
                    L = the whole polyline length; 0 when n = 0.

Per map, as ``evaluate_window``: the unweighted mean over segments of more than
min_pixels_per_vessel = 10 pixels. The segments are ours (VesselMap.segments: the
skeleton cut at junctions, each walked in order from an end); AutoMorph's
``detect_vessel_border`` finds them differently (and can hand them over out of order,
AutoMorph issue #18), so per-segment sets can differ on a real tree; on a hand-made
single-path map they are the same pixels in the same order.
"""

from __future__ import annotations

import math

import numpy as np

from ablate.errors import InvalidInput
from ablate.evaluate.morphology import FEATURES, VesselMap, agreement, feature_delta
from ablate.specs import Morphology

DEFINITIONS = tuple(m.value for m in Morphology)  # ("ablate", "automorph")
AUTOMORPH_MIN_PIXELS = 10  # evaluate_window(min_pixels_per_vessel=10): segments of MORE than this
RECOMPUTED = ("fractal_dimension", "density", "distance_tortuosity", "squared_curvature_tortuosity",
              "tortuosity_density")


def box_fractal_dimension(mask: np.ndarray) -> float:
    """AutoMorph's box-counting dimension (see the module doc)."""
    z = np.asarray(mask, bool).astype(np.int64)
    n = math.floor(math.log2(min(z.shape)))
    sizes = 2 ** np.arange(n, 1, -1)
    counts = []
    for k in sizes:
        s = np.add.reduceat(np.add.reduceat(z, np.arange(0, z.shape[0], k), axis=0), np.arange(0, z.shape[1], k), axis=1)
        counts.append(int(((s > 0) & (s < k * k)).sum()))
    if len(sizes) < 2 or min(counts) == 0:
        return math.nan
    return float(-np.polyfit(np.log(sizes), np.log(counts), 1)[0])


def _length(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.hypot(np.diff(x), np.diff(y)).sum())


def _chord(x: np.ndarray, y: np.ndarray) -> float:
    return float(math.hypot(x[-1] - x[0], y[-1] - y[0]))


def distance_tortuosity(x: np.ndarray, y: np.ndarray) -> float:
    c = _chord(x, y)
    return _length(x, y) / c if c > 0 else math.nan


def curvature_tortuosity(x: np.ndarray, y: np.ndarray) -> float:
    """|integral of the signed curvature| over the sample index (module doc)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    x1, y1 = (x[2:] - x[:-2]) / 2, (y[2:] - y[:-2]) / 2
    x2, y2 = (x[2:] - 2 * x[1:-1] + x[:-2]) / 4, (y[2:] - 2 * y[1:-1] + y[:-2]) / 4
    with np.errstate(divide="ignore", invalid="ignore"):
        k = (x1 * y2 - x2 * y1) / (y1**2 + x1**2) ** 1.5
    if len(k) < 2:
        return float(abs(k.sum())) if len(k) else 0.0
    return float(abs(((k[1:] + k[:-1]) / 2).sum()))  # trapezoid rule, unit spacing


def inflection_points(y: np.ndarray) -> list[int]:
    """Positions k-1 where sign(y[k] - y[k-1]) differs from the previous step's, k = 2..n-1."""
    cf = np.sign(np.diff(np.asarray(y, float)))  # cf[j] = sign(y[j+1] - y[j])
    return [k - 1 for k in range(2, len(y)) if cf[k - 1] != cf[k - 2]]


def tortuosity_density(x: np.ndarray, y: np.ndarray) -> float:
    pts = inflection_points(y)
    n = len(pts)
    if n == 0:
        return 0.0
    total, start = 0.0, 0
    for p in pts:
        sx, sy = x[start:p], y[start:p]
        if len(sx) and _chord(sx, sy):
            total += _length(sx, sy) / _chord(sx, sy) - 1
        start = p
    return (n - 1) / n + total / _length(x, y)


def automorph_features(mask, fov=None) -> dict[str, float]:
    """Every feature of ablate.evaluate.morphology, with RECOMPUTED ones as AutoMorph defines them."""
    vm = VesselMap.of(mask, fov)
    out = vm.features()
    out["fractal_dimension"] = box_fractal_dimension(vm.mask)
    out["density"] = vm.area / vm.mask.size
    segs = [s for s in vm.segments if len(s) > AUTOMORPH_MIN_PIXELS]
    vals = np.array([(distance_tortuosity(s[:, 0], s[:, 1]), curvature_tortuosity(s[:, 0], s[:, 1]),
                      tortuosity_density(s[:, 0], s[:, 1])) for s in segs], float).reshape(-1, 3)
    for i, k in enumerate(("distance_tortuosity", "squared_curvature_tortuosity", "tortuosity_density")):
        out[k] = float(np.nanmean(vals[:, i])) if len(vals) and not np.isnan(vals[:, i]).all() else math.nan
    out["segments"] = float(len(segs))
    return out


def features_for(definitions: str):
    """(features(mask, fov), agreement(reference, test, fov)) of a definition set."""
    from ablate.evaluate.morphology import vessel_features

    if definitions == "ablate":
        return vessel_features, agreement
    if definitions == "automorph":
        return automorph_features, automorph_agreement
    raise InvalidInput(f"unknown morphology definitions {definitions!r}; valid: {list(DEFINITIONS)}")


def automorph_agreement(reference, test, fov=None) -> dict[str, float]:
    """``agreement`` with the delta_<f> of the RECOMPUTED features taken between AutoMorph's values."""
    out = agreement(reference, test, fov)
    fr, ft = automorph_features(reference, fov), automorph_features(test, fov)
    out.update({f"delta_{k}": feature_delta(k, fr[k], ft[k]) for k in FEATURES})
    return out
