"""Vessel morphology of binary vessel maps, and agreement between two maps.

The autoencoders are judged by how well the vascular tree survives
reconstruction (docs/paper.md §4): a vessel segmenter is run on the real and on the
reconstructed photograph, and the two binary maps are compared here. The
per-map features follow AutoMorph's M3 module (rmaphoh/AutoMorph,
``M3_feature_whole_pic/retipy/retipy/tortuosity_measures.py``: ``global_cal``
and ``evaluate_window``) where it defines them, and say where they
deliberately differ. Everything is in pixels; nothing is converted to
micrometres. Pure numpy/scipy/scikit-image.

Conventions
-----------
* Foreground (vessels, skeleton) is 8-connected, background 4-connected, so
  the two are complementary (Euler relation).
* ``fov`` restricts everything: the map is ANDed with it before anything else
  is computed, and the density is taken over the FOV area.
* Skeleton: ``skimage.morphology.skeletonize(method="lee")`` (Lee et al.
  1994; unlike the default Zhang thinning it does not bend the end of a thick
  straight bar towards a corner), then thinned to an 8-minimal curve: pixels
  whose skeleton neighbours stay 8-connected without them (staircase corners)
  are removed one at a time. A skeleton pixel with >= 3 skeleton neighbours is
  a junction pixel, one with exactly 1 an end point.
* Segments: the 8-connected pieces of the skeleton left after removing the
  junction pixels. Each is ordered by walking it from one of its end points
  (depth-first order on the pixel-adjacency graph, which on a path is the
  path), so consecutive pixels are always 8-neighbours. AutoMorph's
  ``detect_vessel_border`` could hand the tortuosity measures pixels out of
  order (AutoMorph issue #18). A piece without an end point is a closed loop
  with no junction; it has no chord and is left out of the segments.

Per-map features (``vessel_features``), all floats
--------------------------------------------------
density
    vessel pixels / FOV pixels (whole image when ``fov`` is None). Unitless.
    AutoMorph divides by the whole image; inside a FOV this is the DRIVE
    README's convention (0.087-0.168).
fractal_dimension
    Box counting (Minkowski-Bouligand), unitless. Box sides s = 2, 4, 8, ...
    up to the largest power of two <= min(H, W) / 8 (2..64 at 512 px, 2..32
    at 256 px), on a grid anchored at the top-left corner of the map's
    bounding box; N(s) = number of boxes holding at least one vessel pixel;
    FD = least-squares slope of log N(s) against log(1/s). Larger boxes and
    an image-anchored grid are avoided because a finite object's edges bias
    N(s) once only a few boxes span it (a 433-px square reads 1.91 with boxes
    up to side/4 on the image grid, 1.98 here). AutoMorph uses s = 4 ..
    2**floor(log2(min side)) on the image grid and counts only boxes that are
    neither empty nor full (a boundary dimension: a filled square gives ~1);
    the occupied-box count here gives 1 for a line and 2 for a square.
    NaN for an empty map or an image under 32 px.
average_width
    (Coarse: moves in 2 px steps on axis-aligned vessels, bars 1-5 px read
    1, 1, 3, 3, 5; ``vessel_width`` below resolves 1 px.)
    Mean over sampled skeleton pixels of 2 * R - 1, R = the largest EDT value
    in the pixel's 3x3 neighbourhood (the ridge of the distance map, so a
    skeleton pixel half a pixel off the centre line does not read low); EDT =
    Euclidean distance from a vessel pixel centre to the nearest background
    pixel centre, the image border counting as background. An axis-aligned
    bar of odd width w = 2r + 1 has R = r + 1: exactly w (an even width reads
    w - 1). At other orientations the nearest background centre lies closer
    to the true edge, and the value reads up to ~1 px low (measured on arcs
    of widths 3/5/7/9: -0.1/-0.3/-0.5/-0.5 px). Sampled pixels: skeleton
    minus junction pixels, minus the first and last round(EDT) pixels of
    every segment (a vessel's rounded end and the widening at a junction).
    Pixels. NaN when there is no skeleton.
vessel_width
    Vessel pixels per unit centre-line length over the same sampled skeleton
    pixels (ablate.evaluate.width: each sample's Voronoi cell in the map over
    the length it stands for on its smoothed centre line). Resolves 1 px: bars
    1-5 px wide read 1-5, oblique lines within 0.25 px. Pixels; the width the
    report's questions use. NaN when no segment keeps a sampled pixel.
average_width_area
    AutoMorph's width: vessel pixels / skeleton pixels (a pixel count, as
    AutoMorph's ``np.sum(skeleton)``; it reads high on diagonal vessels,
    whose skeleton has fewer pixels than its length). Pixels.
distance_tortuosity
    Per segment: arc length / chord (Hart et al. 1999; AutoMorph's
    ``distance_measure_tortuosity``). 1 for a straight segment. Unitless.
squared_curvature_tortuosity
    Per segment: (integral of curvature**2 ds) / arc length, Hart et al.'s
    total squared curvature normalised by length. Px**-2; 0 for a straight
    segment, 1 / R**2 for a circular arc of radius R. AutoMorph's function of
    this name integrates the *signed* curvature over the pixel index and
    takes |.| (an S-bend cancels out); that is not reproduced.
tortuosity_density
    Per segment, Grisan et al. (IEEE TMI 27(3), 2008): the segment is cut at
    its inflection points into n sub-arcs of constant curvature sign, and
    TD = (n - 1) / n * (1 / L) * sum_i (L_i / C_i - 1), L the segment's arc
    length and L_i / C_i each sub-arc's arc/chord. Px**-1; 0 for a straight
    segment and for a single bend (n = 1). Inflection points: sign changes of
    the curvature among samples with |curvature| > KAPPA_MIN, ignoring the
    first and last min(ceil(2 * SMOOTH_SIGMA), n // 4) samples (the end
    extension below flattens the curvature there); the cut is half-way
    between the two samples. (retipy's version adds (n-1)/n instead of
    multiplying and drops the last sub-arc.)

    The three tortuosities use the segment's ordered pixel centres smoothed
    by a Gaussian of SMOOTH_SIGMA samples, both ends extended by point
    reflection so that a straight run stays straight. Arc length is the
    length of the smoothed polyline, the chord joins its end points, the
    curvature is (x'y'' - y'x'') / (x'^2 + y'^2)^1.5 from central
    differences. Without smoothing the pixel staircase makes every oblique
    line tortuous; with it a straight digital line at a shallow slope still
    reads ~1e-4 px**-2 in squared curvature (its steps are further apart than
    the smoothing), a straight line at 0 or 45 degrees reads 0. Only
    segments of at least MIN_SEGMENT_PX pixels count (AutoMorph keeps
    segments of more than 10 pixels). The map's value is the unweighted
    mean over those segments, as AutoMorph's ``evaluate_window``. NaN when
    no segment qualifies.
skeleton_length
    Sum over skeleton links of 1 (4-neighbours) or sqrt(2) (diagonal
    neighbours; a diagonal link is not counted when a common 4-neighbour is
    also skeleton, since the two orthogonal links already span it). Pixels.
branch_points
    8-connected clusters of junction pixels (a blob of adjacent junction
    pixels is one branch point).
end_points
    Skeleton pixels with exactly one skeleton neighbour.
components
    8-connected components of the vessel map (Betti-0).
holes
    4-connected background components that do not touch the image border,
    i.e. regions enclosed by vessels (Betti-1). With a FOV, the background
    outside it touches the border, so a region closed off only by the FOV
    edge is not a hole.
segments
    Number of segments the tortuosities were averaged over.

An empty map gives density 0, counts and skeleton_length 0, and NaN for
fractal_dimension, the three widths and the three tortuosities.

Agreement (``agreement``)
-------------------------
dice            2|R & T| / (|R| + |T|); 1 when both are empty.
cldice          centre-line Dice (Shit et al., CVPR 2021):
                Tprec = |S(T) & R| / |S(T)|, Tsens = |S(R) & T| / |S(R)|,
                clDice = 2 Tprec Tsens / (Tprec + Tsens), S = the skeleton
                above; 1 when both skeletons are empty, 0 when only one is.
betti0_error    |components(R) - components(T)|
betti1_error    |holes(R) - holes(T)|
betti0_patch64_error, betti1_patch64_error
                the same counted per 64 px tile and summed (ablate.evaluate.topology):
                a break and a merge elsewhere no longer cancel.
delta_<f>       f(T) - f(R) for every feature f above; where only one map's f is NaN (it has
                no vessel, or no segment long enough), that map's f is f's least value
                (FEATURE_FLOOR: 0, 1 for distance_tortuosity), so a reconstruction that loses
                the vessels scores the whole of the original's f; NaN where both are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import depth_first_order
from skimage.morphology import skeletonize

from ablate.evaluate.topology import patch_betti_errors
from ablate.evaluate.width import vessel_width
from ablate.metric_info import Better, MetricInfo

__all__ = [
    "FEATURES",
    "FEATURE_FLOOR",
    "KAPPA_MIN",
    "MIN_SEGMENT_PX",
    "SMOOTH_SIGMA",
    "VesselMap",
    "agreement",
    "box_counts",
    "feature_delta",
    "segment_tortuosity",
    "tortuosities",
    "vessel_features",
]

MIN_SEGMENT_PX = 11  # AutoMorph: len(vessel) > min_pixels_per_vessel = 10
SMOOTH_SIGMA = 4.0  # samples (~px) of Gaussian smoothing of a segment's centre line
KAPPA_MIN = 2e-3  # px**-1; |curvature| below this is treated as 0 when finding inflections
SKELETON_METHOD = "lee"

FEATURES = (
    "density",
    "fractal_dimension",
    "average_width",
    "vessel_width",
    "average_width_area",
    "distance_tortuosity",
    "squared_curvature_tortuosity",
    "tortuosity_density",
    "skeleton_length",
    "branch_points",
    "end_points",
    "components",
    "holes",
    "segments",
)

# agreement() between a reference vessel map and a test map
DICE = MetricInfo("dice", Better.HIGHER, about="Dice of the two vessel maps inside the FOV")
CLDICE = MetricInfo("cldice", Better.HIGHER, about="centre-line Dice (Shit et al. 2021)")
BETTI0_ERROR = MetricInfo("betti0_error", Better.LOWER, about="|components(R) - components(T)|")
BETTI1_ERROR = MetricInfo("betti1_error", Better.LOWER, about="|holes(R) - holes(T)|")
# |feature(R) - feature(T)| for each of FEATURES: abs_delta_density, ...
ABS_DELTA = MetricInfo("abs_delta_", Better.LOWER, family=True, about="|feature(R) - feature(T)| of a vessel feature",
                       nan_when="neither vessel map has what the feature measures: a vessel, a segment of "
                                f"{MIN_SEGMENT_PX} px for the tortuosities, an image of 32 px for the fractal dimension")
METRICS = (DICE, CLDICE, BETTI0_ERROR, BETTI1_ERROR, ABS_DELTA)
# What a feature that is NaN on a map with none of what it measures (no vessel pixel, no segment
# long enough) reads there in a delta: its least value (arc / chord >= 1). Without it delta_<f> was
# NaN where the reconstruction lost the vessels, the report's trial mean skipped that image, and
# the loss scored better than a faithful copy's 0 (tests/evaluate/test_measures_cannot_be_gamed.py).
FEATURE_FLOOR = {"fractal_dimension": 0.0, "average_width": 0.0, "vessel_width": 0.0, "average_width_area": 0.0,
                 "distance_tortuosity": 1.0, "squared_curvature_tortuosity": 0.0, "tortuosity_density": 0.0}

_EIGHT = np.ones((3, 3), bool)
_FOUR = ndi.generate_binary_structure(2, 1)
# ring positions N, NE, E, SE, S, SW, W, NW -> bit i of a pixel's neighbour code
_RING = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
_POPCOUNT = np.array([i.bit_count() for i in range(256)], np.uint8)


def _neighbour_codes(sk: np.ndarray) -> np.ndarray:
    """8-bit code of each pixel's 8 neighbours (bit i = ring position i is set)."""
    h, w = sk.shape
    p = np.pad(sk, 1)
    code = np.zeros((h, w), np.uint8)
    for i, (dy, dx) in enumerate(_RING):
        code |= p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w].view(np.uint8) << i
    return code


_EDT_RMAX = 12
_dy, _dx = np.mgrid[-_EDT_RMAX : _EDT_RMAX + 1, -_EDT_RMAX : _EDT_RMAX + 1]
_d = np.hypot(_dy, _dx)
_keep = (_d > 0) & (_d <= _EDT_RMAX)
_order = np.argsort(_d[_keep], kind="stable")
_EDT_OFFSETS = (_dy[_keep][_order], _dx[_keep][_order], _d[_keep][_order])
del _dy, _dx, _d, _keep, _order


def _edt_at(mask: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Euclidean distance from pixels (ys, xs) to the nearest background pixel centre.

    Same values as ``ndi.distance_transform_edt`` of the map padded with one
    background pixel, but only at the pixels asked for: offsets are tried in
    order of distance until each pixel meets background (the thin vessels of a
    fundus map meet it within a few pixels); pixels farther than _EDT_RMAX from
    any background fall back to the full transform.
    """
    r = _EDT_RMAX
    p = np.pad(mask, r)
    ys, xs = np.asarray(ys) + r, np.asarray(xs) + r
    out = np.zeros(len(ys))
    todo = np.flatnonzero(p[ys, xs])
    for dy, dx, d in zip(*_EDT_OFFSETS):
        if len(todo) == 0:
            break
        hit = ~p[ys[todo] + dy, xs[todo] + dx]
        if hit.any():
            out[todo[hit]] = d
            todo = todo[~hit]
    if len(todo):
        full = ndi.distance_transform_edt(np.pad(mask, 1))
        out[todo] = full[ys[todo] - r + 1, xs[todo] - r + 1]
    return out


def _find(parent: list[int], a: int) -> int:
    """The root of `a` in the union-find table `parent`."""
    while parent[a] != a:
        a = parent[a]
    return a


def _removable_table() -> np.ndarray:
    """REMOVABLE[code]: the centre pixel can go without changing 8-connectivity.

    True when the centre has >= 2 neighbours that form one 8-connected group
    without it (ring positions i, i+1 touch, and so do two 4-neighbours round a
    corner), and it has a background 4-neighbour (so no hole is made).
    """
    table = np.zeros(256, bool)
    for code in range(256):
        on = [(code >> i) & 1 for i in range(8)]
        if sum(on) < 2 or all(on[i] for i in (0, 2, 4, 6)):
            continue
        parent = list(range(8))
        for i in range(8):
            for j in ((i + 1) % 8, (i + 2) % 8 if i % 2 == 0 else None):
                if j is not None and on[i] and on[j]:
                    parent[_find(parent, i)] = _find(parent, j)
        table[code] = len({_find(parent, i) for i in range(8) if on[i]}) == 1
    return table


_REMOVABLE = _removable_table()


def _minimal_skeleton(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lee skeleton with 8-redundant pixels removed one at a time, and its neighbour codes."""
    sk = skeletonize(mask, method=SKELETON_METHOD)
    codes = _neighbour_codes(sk)
    for _ in range(10):  # one or two passes in practice; Lee rarely leaves any
        cand = np.argwhere(sk & _REMOVABLE[codes])
        if len(cand) == 0:
            break
        padded = np.pad(sk, 1)
        removed = 0
        for y, x in cand + 1:
            code = int(_neighbour_codes(padded[y - 1 : y + 2, x - 1 : x + 2])[1, 1])
            if _REMOVABLE[code]:
                padded[y, x] = False
                removed += 1
        sk = np.ascontiguousarray(padded[1:-1, 1:-1])
        codes = _neighbour_codes(sk)
        if removed == 0:
            break
    return sk, codes


def _pool2(m: np.ndarray) -> np.ndarray:
    """2x2 'any' pooling of a boolean grid (odd edges padded with False)."""
    h, w = m.shape
    if h % 2 or w % 2:
        m = np.pad(m, ((0, h % 2), (0, w % 2)))
    return m[0::2, 0::2] | m[1::2, 0::2] | m[0::2, 1::2] | m[1::2, 1::2]


def box_counts(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box sides s = 2, 4, ... <= min(H, W) / 8 and the occupied-box counts.

    The grid is anchored at the top-left corner of the map's bounding box.
    """
    mask = np.asarray(mask, bool)
    h, w = mask.shape
    smax = min(h, w) // 8
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    level = mask[rows[0] :, cols[0] :] if len(rows) else mask
    sizes, counts, s = [], [], 1
    while 2 * s <= smax:
        level = _pool2(level)
        s *= 2
        sizes.append(s)
        counts.append(int(level.sum()))
    return np.array(sizes, float), np.array(counts, float)


def tortuosities(coords: np.ndarray, lengths: np.ndarray, sigma: float | None = None,
                 kappa_min: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance, squared-curvature and density tortuosity of many segments at once.

    ``coords``: (N, 2) pixel centres of all segments concatenated, each in
    walking order; ``lengths``: (M,) samples per segment (each >= 2). Returns
    three (M,) arrays; see the module docstring for the definitions.
    """
    sigma = SMOOTH_SIGMA if sigma is None else float(sigma)
    kappa_min = KAPPA_MIN if kappa_min is None else float(kappa_min)
    c = np.asarray(coords, float)
    n = np.asarray(lengths, np.int64)
    m = len(n)
    if m == 0:
        e = np.empty(0)
        return e, e.copy(), e.copy()
    o = np.concatenate([[0], np.cumsum(n)[:-1]])
    last = o + n - 1
    # pad every segment by point reflection; K covers the Gaussian's radius
    # plus the two samples the second central difference reaches
    k = int(4 * sigma + 0.5) + 2 if sigma > 0 else 2
    j = np.arange(1, k + 1)
    reach = np.minimum(j[None, :], (n - 1)[:, None])
    head = (2 * c[o][:, None, :] - c[o[:, None] + reach])[:, ::-1]
    tail = 2 * c[last][:, None, :] - c[last[:, None] - reach]
    npad = n + 2 * k
    q = np.concatenate([[0], np.cumsum(npad)[:-1]])
    body = np.arange(len(c)) + np.repeat(q + k - o, n)
    padded = np.empty((int(npad.sum()), 2))
    padded[(q[:, None] + np.arange(k)).ravel()] = head.reshape(-1, 2)
    padded[((q + k + n)[:, None] + np.arange(k)).ravel()] = tail.reshape(-1, 2)
    padded[body] = c
    sm = ndi.gaussian_filter1d(padded, sigma, axis=0, mode="nearest") if sigma > 0 else padded
    d1 = np.gradient(sm, axis=0)
    d2 = np.gradient(d1, axis=0)
    p, d1, d2 = sm[body], d1[body], d2[body]

    seg = np.repeat(np.arange(m), n)
    steps = np.hypot(*np.diff(p, axis=0).T) * (seg[1:] == seg[:-1])
    cum = np.concatenate([[0.0], np.cumsum(steps)])
    arc = cum[last] - cum[o]
    chord = np.hypot(*(p[last] - p[o]).T)
    speed = np.hypot(d1[:, 0], d1[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.nan_to_num((d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]) / speed**3)
        sct = np.bincount(seg, kappa**2 * speed, minlength=m) / arc

    # inflection points -> sub-arcs (Grisan)
    t = np.arange(len(p)) - np.repeat(o, n)
    edge = np.repeat(np.minimum(math.ceil(2 * sigma), n // 4), n)
    ok = (np.abs(kappa) > kappa_min) & (t >= edge) & (t < np.repeat(n, n) - edge)
    vi = np.flatnonzero(ok)
    flip = (seg[vi[1:]] == seg[vi[:-1]]) & (np.sign(kappa[vi[1:]]) != np.sign(kappa[vi[:-1]]))
    cuts = (vi[:-1][flip] + vi[1:][flip]) // 2
    bounds = np.concatenate([o, cuts, last])
    kind = np.concatenate([np.zeros(m, int), np.ones(len(cuts), int), np.full(m, 2)])
    order = np.lexsort((kind, bounds))
    bounds, bseg = bounds[order], seg[bounds[order]]
    a, b = bounds[:-1], bounds[1:]
    pair = bseg[:-1] == bseg[1:]
    a, b, pseg = a[pair], b[pair], bseg[:-1][pair]
    sub_chord = np.hypot(*(p[b] - p[a]).T)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(sub_chord > 0, (cum[b] - cum[a]) / sub_chord - 1.0, 0.0)
        nsub = np.bincount(seg[cuts], minlength=m) + 1
        td = (nsub - 1) / nsub * np.bincount(pseg, ratio, minlength=m) / arc
        dt = arc / chord
    bad = ~((arc > 0) & (chord > 0))
    for v in (dt, sct, td):
        v[bad] = np.nan
    return dt, sct, td


def segment_tortuosity(coords: np.ndarray, sigma: float | None = None,
                       kappa_min: float | None = None) -> tuple[float, float, float]:
    """(distance, squared-curvature, density) tortuosity of one ordered segment."""
    c = np.asarray(coords, float)
    dt, sct, td = tortuosities(c, np.array([len(c)]), sigma, kappa_min)
    return float(dt[0]), float(sct[0]), float(td[0])


@dataclass(eq=False)
class VesselMap:
    """One binary vessel map, restricted to its FOV, with lazily shared derivatives.

    The skeleton, its neighbour codes, junctions, ordered segments and width
    samples are each computed once and reused by every feature and by
    ``agreement``; ``features()`` is cached too.
    """

    mask: np.ndarray
    fov: np.ndarray | None = None
    _features: dict | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.ndim != 2:
            raise ValueError(f"vessel map must be 2-D (H, W), got shape {mask.shape}")
        mask = mask.astype(bool)
        if self.fov is not None:
            fov = np.asarray(self.fov).astype(bool)
            if fov.shape != mask.shape:
                raise ValueError(f"fov shape {fov.shape} != mask shape {mask.shape}")
            self.fov = fov
            mask = mask & fov
        self.mask = np.ascontiguousarray(mask)

    @classmethod
    def of(cls, mask, fov=None) -> VesselMap:
        """``mask`` itself when it already is a VesselMap on the same FOV."""
        if isinstance(mask, VesselMap):
            if fov is None or (mask.fov is not None and np.array_equal(mask.fov, np.asarray(fov, bool))):
                return mask
            return cls(mask.mask, fov)
        return cls(mask, fov)

    # -- shared derivatives ---------------------------------------------------
    @cached_property
    def area(self) -> int:
        return int(self.mask.sum())

    @cached_property
    def fov_area(self) -> int:
        return int(self.fov.sum()) if self.fov is not None else self.mask.size

    @cached_property
    def _skeleton_codes(self) -> tuple[np.ndarray, np.ndarray]:
        return _minimal_skeleton(self.mask)

    @property
    def skeleton(self) -> np.ndarray:
        return self._skeleton_codes[0]

    @cached_property
    def degree(self) -> np.ndarray:
        """Number of skeleton 8-neighbours of each skeleton pixel (0 off it)."""
        sk, codes = self._skeleton_codes
        return _POPCOUNT[codes] * sk

    @cached_property
    def edt(self) -> np.ndarray:
        """Full distance map (not used by the features, which sample ``_edt_at``)."""
        return ndi.distance_transform_edt(np.pad(self.mask, 1))[1:-1, 1:-1]

    @cached_property
    def junctions(self) -> np.ndarray:
        return self.skeleton & (self.degree >= 3)

    @cached_property
    def components(self) -> int:
        return int(ndi.label(self.mask, _EIGHT)[1])

    @cached_property
    def holes(self) -> int:
        return int(ndi.label(~np.pad(self.mask, 1), _FOUR)[1]) - 1

    @cached_property
    def _segs(self) -> tuple[np.ndarray, np.ndarray]:
        """All open segments, concatenated (N, 2) in walking order, and their lengths."""
        seg = self.skeleton & ~self.junctions
        ys, xs = np.nonzero(seg)
        n = len(ys)
        if n == 0:
            return np.empty((0, 2), np.int64), np.empty(0, np.int64)
        idx = np.full(seg.shape, -1, np.int64)
        idx[ys, xs] = np.arange(n)
        padded = np.pad(idx, 1, constant_values=-1)
        h, w = seg.shape
        a_parts, b_parts = [], []
        for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):  # each undirected link once
            nb = padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
            ok = (idx >= 0) & (nb >= 0)
            a_parts.append(idx[ok])
            b_parts.append(nb[ok])
        a, b = np.concatenate(a_parts), np.concatenate(b_parts)
        deg = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
        lab = ndi.label(seg, _EIGHT)[0][ys, xs]
        ends = np.flatnonzero(deg == 1)
        _, first = np.unique(lab[ends], return_index=True)
        starts = ends[first]  # one end per open segment; closed loops have none
        if len(starts) == 0:
            return np.empty((0, 2), np.int64), np.empty(0, np.int64)
        root = n  # virtual root linked to every start: one DFS walks them all in turn
        rows = np.concatenate([a, np.full(len(starts), root)])
        cols = np.concatenate([b, starts])
        g = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n + 1, n + 1)).tocsr()
        order, pred = depth_first_order(g, root, directed=False, return_predecessors=True)
        order = order[1:]
        breaks = np.flatnonzero(pred[order] == root)
        lengths = np.diff(np.append(breaks, len(order)))
        return np.stack([ys[order], xs[order]], axis=1), lengths

    @property
    def segments(self) -> list[np.ndarray]:
        """Open segments, each (n, 2) int (row, col), consecutive pixels 8-adjacent."""
        coords, lengths = self._segs
        return np.split(coords, np.cumsum(lengths)[:-1]) if len(lengths) else []

    @cached_property
    def width_samples(self) -> np.ndarray:
        """Skeleton pixels sampled for the width (see module docstring)."""
        coords, lengths = self._segs
        keep = self.skeleton & ~self.junctions  # closed loops stay in
        if len(lengths):
            o = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            last = o + lengths - 1
            cut0 = np.rint(_edt_at(self.mask, coords[o, 0], coords[o, 1])).astype(np.int64)
            cut1 = np.rint(_edt_at(self.mask, coords[last, 0], coords[last, 1])).astype(np.int64)
            t = np.arange(len(coords)) - np.repeat(o, lengths)
            inner = (t >= np.repeat(cut0, lengths)) & (t < np.repeat(lengths - cut1, lengths))
            out = coords[~inner]
            keep[out[:, 0], out[:, 1]] = False
        return keep

    # -- features -------------------------------------------------------------
    def fractal_dimension(self) -> float:
        sizes, counts = box_counts(self.mask)
        if len(sizes) < 2 or counts.min() <= 0:
            return math.nan
        return float(np.polyfit(np.log(1.0 / sizes), np.log(counts), 1)[0])

    def skeleton_length(self) -> float:
        sk = self.skeleton
        p = np.pad(sk, 1)
        h, w = sk.shape

        def sh(dy: int, dx: int) -> np.ndarray:
            return p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

        ortho = int((sk & sh(0, 1)).sum() + (sk & sh(1, 0)).sum())
        diag = int((sk & sh(1, 1) & ~sh(0, 1) & ~sh(1, 0)).sum() + (sk & sh(1, -1) & ~sh(0, -1) & ~sh(1, 0)).sum())
        return float(ortho + math.sqrt(2) * diag)

    def widths(self) -> tuple[float, float]:
        n_sk = int(self.skeleton.sum())
        if n_sk == 0:
            return math.nan, math.nan
        sel = self.width_samples
        if not sel.any():
            sel = self.skeleton
        # R = max of the EDT over each sample's 3x3 neighbourhood; the EDT is
        # evaluated only on the vessel pixels of those neighbourhoods
        near = (_neighbour_codes(sel) > 0) | sel
        near &= self.mask
        ny, nx = np.nonzero(near)
        e = np.zeros((sel.shape[0] + 2, sel.shape[1] + 2))
        e[ny + 1, nx + 1] = _edt_at(self.mask, ny, nx)
        ys, xs = np.nonzero(sel)
        ridge = np.max([e[ys + 1 + dy, xs + 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
        return float(np.mean(2.0 * ridge - 1.0)), self.area / n_sk

    def tortuosity(self) -> tuple[float, float, float, int]:
        coords, lengths = self._segs
        use = lengths >= MIN_SEGMENT_PX
        if not use.any():
            return math.nan, math.nan, math.nan, 0
        dt, sct, td = tortuosities(coords[np.repeat(use, lengths)], lengths[use])
        good = ~np.isnan(dt)
        if not good.any():
            return math.nan, math.nan, math.nan, 0
        return float(dt[good].mean()), float(sct[good].mean()), float(td[good].mean()), int(good.sum())

    def features(self) -> dict[str, float]:
        if self._features is None:
            width, width_area = self.widths()
            dt, sct, td, nseg = self.tortuosity()
            self._features = {
                "density": self.area / self.fov_area if self.fov_area else math.nan,
                "fractal_dimension": self.fractal_dimension(),
                "average_width": width,
                "vessel_width": vessel_width(self.mask, self.skeleton, self.width_samples, *self._segs,
                                             SMOOTH_SIGMA),
                "average_width_area": width_area,
                "distance_tortuosity": dt,
                "squared_curvature_tortuosity": sct,
                "tortuosity_density": td,
                "skeleton_length": self.skeleton_length(),
                "branch_points": float(ndi.label(self.junctions, _EIGHT)[1]),
                "end_points": float((self.degree == 1).sum()),
                "components": float(self.components),
                "holes": float(self.holes),
                "segments": float(nseg),
            }
        return dict(self._features)


def vessel_features(mask, fov=None) -> dict[str, float]:
    """Morphology of one binary vessel map (H, W); see the module docstring."""
    return VesselMap.of(mask, fov).features()


def feature_delta(name: str, reference: float, test: float) -> float:
    """delta_<name> = f(T) - f(R), with a NaN on one side only (that map has none of what f
    measures) read as f's floor (FEATURE_FLOOR); NaN where both are (neither map has it, or f is
    undefined at this size: the fractal dimension under 32 px).

    Args:
        name: the feature (one of FEATURES).
        reference: f of the original's map R.
        test: f of the reconstruction's map T.
    """
    if math.isnan(reference) != math.isnan(test) and name in FEATURE_FLOOR:
        reference = FEATURE_FLOOR[name] if math.isnan(reference) else reference
        test = FEATURE_FLOOR[name] if math.isnan(test) else test
    return test - reference


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def agreement(reference, test, fov=None) -> dict[str, float]:
    """Overlap, centre-line and topology agreement of ``test`` with ``reference``.

    Either map may be a ``VesselMap``; its skeleton and features are reused.
    """
    r = VesselMap.of(reference, fov)
    t = VesselMap.of(test, fov)
    if r.mask.shape != t.mask.shape:
        raise ValueError(f"shape mismatch: {r.mask.shape} vs {t.mask.shape}")
    sr, st = r.skeleton, t.skeleton
    nr, nt = int(sr.sum()), int(st.sum())
    if nr == 0 and nt == 0:
        cl = 1.0
    else:
        tprec = int((st & r.mask).sum()) / nt if nt else 0.0
        tsens = int((sr & t.mask).sum()) / nr if nr else 0.0
        cl = 0.0 if tprec + tsens == 0 else 2.0 * tprec * tsens / (tprec + tsens)
    out = {
        "dice": _dice(r.mask, t.mask),
        "cldice": cl,
        "betti0_error": float(abs(r.components - t.components)),
        "betti1_error": float(abs(r.holes - t.holes)),
        **patch_betti_errors(r.mask, t.mask),
    }
    fr, ft = r.features(), t.features()
    out.update({f"delta_{k}": feature_delta(k, fr[k], ft[k]) for k in FEATURES})
    return out
