"""Vessel width as area per unit centre-line length, resolving 1 px differences.

``average_width`` of ablate.evaluate.morphology (2 R - 1 from the distance transform)
moves in steps of 2 px on axis-aligned vessels (bars 1-5 px wide read 1, 1, 3, 3, 5),
so it cannot see the 1 -> 2 px thickening a blurred reconstruction shows. AutoMorph's
area / skeleton pixels reads high on short and diagonal vessels (the skeleton stops w/2
short of each end; a diagonal skeleton has fewer pixels than its length).

``vessel_width`` (pixels):

    sum over sampled skeleton pixels of A(p)  /  sum over the same pixels of l(p)

* A(p): vessel pixels whose nearest skeleton pixel is p (the Voronoi cell of p inside
  the vessel map; ties as scipy's ``distance_transform_edt(return_indices=True)``
  breaks them). A bar of width w gives each centre-line pixel a cross-section of w.
* l(p): the centre-line length p stands for: half the distance to its predecessor
  plus half to its successor along its segment, measured on the segment's pixel
  centres smoothed by a Gaussian of ``sigma`` samples (ends extended by point
  reflection, as the tortuosities of ablate.evaluate.morphology). Smoothing takes
  the staircase out of an oblique digital line (without it a 22.5 degree line is
  ~11 % too long and its width ~11 % too small).
* Sampled pixels: those of the open segments that VesselMap.width_samples keeps
  (junction pixels and the first / last round(EDT) pixels of each segment, i.e. a
  vessel's rounded end and the widening at a branch, are left out, together with
  the vessel pixels they own). Closed loops without a junction have no order and
  are left out.

A length-weighted mean, so a long vessel counts in proportion to its length. NaN
when no segment keeps a sampled pixel. Measured on bars 1-5 px wide at 0 and 90
degrees and on 3 and 5 px lines at 20-70 degrees: within 0.25 px
(tests/evaluate/test_width.py).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi


def smooth_path(c: np.ndarray, sigma: float) -> np.ndarray:
    """(n, 2) ordered pixel centres smoothed by a Gaussian of `sigma` samples, ends point-reflected."""
    c = np.asarray(c, float)
    n = len(c)
    if sigma <= 0 or n < 3:
        return c
    k = min(int(4 * sigma + 0.5), n - 1)
    head = 2 * c[0] - c[1 : k + 1][::-1]
    tail = 2 * c[-1] - c[-k - 1 : -1][::-1]
    p = np.concatenate([head, c, tail])
    return ndi.gaussian_filter1d(p, sigma, axis=0, mode="nearest")[k : k + n]


def local_length(p: np.ndarray) -> np.ndarray:
    """(n,) half the step to the previous plus half the step to the next point."""
    steps = np.hypot(*np.diff(p, axis=0).T) if len(p) > 1 else np.zeros(0)
    out = np.zeros(len(p))
    out[1:] += steps / 2
    out[:-1] += steps / 2
    if len(p) > 1:  # a segment's first and last pixel stand for a half step beyond too
        out[0] += steps[0] / 2
        out[-1] += steps[-1] / 2
    return out


def vessel_width(mask: np.ndarray, skeleton: np.ndarray, sampled: np.ndarray, coords: np.ndarray,
                 lengths: np.ndarray, sigma: float) -> float:
    """Area per centre-line length over the sampled pixels of the open segments (module doc).

    mask, skeleton, sampled: (H, W) bool; coords (N, 2) int, the open segments' pixels in
    walking order, concatenated; lengths (M,) pixels per segment.
    """
    if not skeleton.any() or len(lengths) == 0:
        return math.nan
    h, w = mask.shape
    _, (iy, ix) = ndi.distance_transform_edt(~skeleton, return_indices=True)
    owner = (iy * w + ix)[mask]
    owned = np.bincount(owner, minlength=h * w)
    area = length = 0.0
    start = 0
    for n in np.asarray(lengths, np.int64):
        c = coords[start : start + n]
        start += n
        keep = sampled[c[:, 0], c[:, 1]]
        if not keep.any():
            continue
        ll = local_length(smooth_path(c, sigma))
        area += float(owned[c[keep, 0] * w + c[keep, 1]].sum())
        length += float(ll[keep].sum())
    return area / length if length > 0 else math.nan
