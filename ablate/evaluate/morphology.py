"""Vessel morphology of binary vessel maps, and agreement between two maps.

The autoencoders are judged by how well the vascular tree survives
reconstruction (PAPER.md §4): a vessel segmenter is run on the real and on the
reconstructed photograph, and the two binary maps are compared here. The
per-map features follow AutoMorph's M3 module (rmaphoh/AutoMorph,
``retipy/tortuosity_measures.py``: ``global_cal`` and ``evaluate_window``)
where it defines them, and say where they deliberately differ. Everything is
in pixels; nothing is converted to micrometres.

Conventions
-----------
* Foreground (vessels, skeleton) is 8-connected, background 4-connected, so
  the two are complementary and the Euler relation holds.
* ``fov`` restricts everything: the map is ANDed with it before anything else
  is computed, and densities are taken over the FOV area.
* The skeleton is ``skimage.morphology.skeletonize`` (Zhang), then thinned to
  an 8-minimal curve: pixels whose neighbours stay 8-connected without them
  (staircase corners, the centre pixel of a T) are removed one at a time, so a
  curve is one pixel wide in the 8-connected sense, diagonal steps really are
  diagonal and a pixel with three or more skeleton neighbours is a junction.
* Segments are the 8-connected pieces of the skeleton left after removing the
  junction pixels. Each is ordered by walking it from one of its end points
  (depth-first order on the pixel-adjacency graph, which on a path is the
  path). AutoMorph's ``detect_vessel_border`` could hand the tortuosity
  measures pixels out of order (AutoMorph issue #18); here consecutive pixels
  of a segment are always 8-neighbours.

Per-map features (``vessel_features``), all floats
--------------------------------------------------
density
    vessel pixels / FOV pixels (whole image when ``fov`` is None). Unitless.
    AutoMorph divides by the whole image; with a FOV this is the DRIVE
    convention (its README's 0.087-0.168 is inside the FOV).
fractal_dimension
    Box counting (Minkowski-Bouligand). Grid anchored at pixel (0, 0), box
    sides s = 2, 4, 8, ... up to the largest power of two <= min(H, W) / 4
    (so at least 4 boxes per side; 2..128 at 512 px), N(s) = boxes holding at
    least one vessel pixel (partial boxes at the right/bottom edge count),
    FD = least-squares slope of log N(s) against log(1/s). Unitless. AutoMorph
    uses s = 4 .. 2**floor(log2(min side)) and counts only boxes that are
    neither empty nor full (a boundary dimension: a filled square gives ~1);
    the occupied-box count used here gives 1 for a line and 2 for a square.
    NaN for an empty map (log 0) or an image under 8 px.
average_width
    Mean over skeleton pixels that are not junction pixels of 2 * EDT - 1,
    where EDT is the Euclidean distance from the pixel centre to the nearest
    background pixel centre (the image border counts as background). A bar of
    odd width w = 2r + 1 has EDT r + 1 on its centre line, hence exactly w;
    an even width reads w - 1. Pixels. NaN when there is no skeleton.
average_width_area
    AutoMorph's width: vessel pixels / skeleton pixels (pixel count, as
    AutoMorph's ``np.sum(skeleton)``). Pixels; slightly above the true width
    of a bar, because the skeleton stops about w/2 short of each end.
distance_tortuosity
    Per segment: arc length / chord (Hart et al. 1999; AutoMorph's
    ``distance_measure_tortuosity``). 1 for a straight segment. Unitless.
squared_curvature_tortuosity
    Per segment: (integral of curvature**2 ds) / arc length, Hart et al.'s
    total squared curvature normalised by length. Px**-2; 0 for a straight
    segment, 1 / R**2 for a circular arc of radius R. AutoMorph's function of
    this name integrates the *signed* curvature over the pixel index and
    takes |.|, which cancels on an S-bend; it is not reproduced.
tortuosity_density
    Per segment, Grisan et al. (IEEE TMI 27(3), 2008): the segment is cut at
    its inflection points into n sub-arcs of constant curvature sign, and
    TD = (n - 1) / n * (1 / L) * sum_i (L_i / C_i - 1), L the segment's arc
    length, L_i / C_i each sub-arc's arc/chord. Px**-1; 0 for a straight
    segment and for a single bend (n = 1). Inflection points are sign changes
    of the curvature among samples with |curvature| > KAPPA_MIN. (retipy's
    version adds (n-1)/n instead of multiplying and drops the last sub-arc.)

    The three tortuosities use the segment's ordered pixel centres smoothed
    with a Gaussian of SMOOTH_SIGMA samples (ends extended by point
    reflection, so a straight line stays straight): arc length is the length
    of that smoothed polyline, the chord joins its end points, curvature is
    (x'y'' - y'x'') / (x'^2 + y'^2)^1.5 from central differences. Without
    smoothing the pixel staircase makes every oblique line look tortuous.
    Only open segments with at least MIN_SEGMENT_PX pixels count (AutoMorph
    keeps segments of more than 10 pixels); closed loops without a junction
    have no chord and are skipped. The map's value is the unweighted mean
    over segments, as AutoMorph's ``evaluate_window``. NaN when no segment
    qualifies.
skeleton_length
    Sum over skeleton links of 1 (4-neighbours) or sqrt(2) (diagonal
    neighbours; a diagonal link is not counted when a common 4-neighbour is
    also skeleton, since the two orthogonal links already span it). Pixels.
branch_points
    8-connected clusters of skeleton pixels with >= 3 skeleton neighbours
    (a blob of adjacent junction pixels is one branch point).
end_points
    Skeleton pixels with exactly one skeleton neighbour.
components
    8-connected components of the vessel map (Betti-0).
holes
    4-connected background components that do not touch the image border,
    i.e. regions enclosed by vessels (Betti-1). With a FOV, background
    outside the FOV connects to the border, so regions closed off only by
    the FOV edge are not holes.
segments
    Number of segments used for the tortuosities.

An empty map gives density 0, counts and skeleton_length 0, and NaN for
fractal_dimension, both widths and the three tortuosities.

Agreement (``agreement``)
-------------------------
dice            2|R & T| / (|R| + |T|); 1 when both are empty.
cldice          centre-line Dice (Shit et al., CVPR 2021):
                Tprec = |S(T) & R| / |S(T)|, Tsens = |S(R) & T| / |S(R)|,
                clDice = 2 Tprec Tsens / (Tprec + Tsens), S = the skeleton
                above; 1 when both skeletons are empty, 0 when only one is.
betti0_error    |components(R) - components(T)|
betti1_error    |holes(R) - holes(T)|
delta_<f>       f(T) - f(R) for every feature f above.
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

__all__ = [
    "FEATURES",
    "KAPPA_MIN",
    "MIN_SEGMENT_PX",
    "SMOOTH_SIGMA",
    "VesselMap",
    "agreement",
    "box_counts",
    "segment_tortuosity",
    "vessel_features",
]

MIN_SEGMENT_PX = 11  # AutoMorph: len(vessel) > min_pixels_per_vessel = 10
SMOOTH_SIGMA = 4.0  # samples (~px) of Gaussian smoothing of a segment's centre line
SKELETON_METHOD = "lee"
KAPPA_MIN = 2e-3  # px**-1; curvature below this is treated as 0 when finding inflections

FEATURES = (
    "density",
    "fractal_dimension",
    "average_width",
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

_EIGHT = np.ones((3, 3), bool)
_FOUR = ndi.generate_binary_structure(2, 1)
# 3x3 neighbourhood weights: bit i for ring position i = N, NE, E, SE, S, SW, W, NW.
_RING = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
_CODE_KERNEL = np.zeros((3, 3), np.int32)
for _i, (_dy, _dx) in enumerate(_RING):
    # ndi.correlate: out[y, x] = sum k[dy+1, dx+1] * in[y+dy, x+dx]
    _CODE_KERNEL[_dy + 1, _dx + 1] = 1 << _i


def _removable_table() -> np.ndarray:
    """REMOVABLE[code]: the centre pixel can go without changing 8-connectivity.

    True when the centre has >= 2 neighbours, they form one 8-connected group
    without it (ring positions i, i+1 are adjacent, and so are two 4-neighbours
    around a corner), and it has a background 4-neighbour (no hole is made).
    """
    table = np.zeros(256, bool)
    for code in range(256):
        on = [(code >> i) & 1 for i in range(8)]
        if sum(on) < 2 or all(on[i] for i in (0, 2, 4, 6)):
            continue
        parent = list(range(8))

        def find(a: int) -> int:
            while parent[a] != a:
                a = parent[a]
            return a

        for i in range(8):
            for j in ((i + 1) % 8, (i + 2) % 8 if i % 2 == 0 else None):
                if j is not None and on[i] and on[j]:
                    parent[find(i)] = find(j)
        table[code] = len({find(i) for i in range(8) if on[i]}) == 1
    return table


_REMOVABLE = _removable_table()


def _neighbour_codes(img: np.ndarray) -> np.ndarray:
    return ndi.correlate(img.astype(np.int32), _CODE_KERNEL, mode="constant")


def _minimal_skeleton(mask: np.ndarray) -> np.ndarray:
    """Zhang skeleton, then sequential removal of 8-redundant pixels."""
    sk = skeletonize(mask, method=SKELETON_METHOD)
    for _ in range(10):  # converges in one or two passes in practice
        cand = np.argwhere(sk & _REMOVABLE[_neighbour_codes(sk)])
        if len(cand) == 0:
            break
        padded = np.pad(sk, 1)
        removed = 0
        for y, x in cand + 1:
            win = padded[y - 1 : y + 2, x - 1 : x + 2]
            code = int((win * _CODE_KERNEL).sum())
            if _REMOVABLE[code]:
                padded[y, x] = False
                removed += 1
        sk = padded[1:-1, 1:-1]
        if removed == 0:
            break
    return np.ascontiguousarray(sk)


def box_counts(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box sides s = 2, 4, ... <= min(H, W) / 4 and the count of occupied boxes."""
    h, w = mask.shape
    smax = min(h, w) // 4
    sizes, counts = [], []
    m, s = mask, 1
    while 2 * s <= smax:
        hh, ww = m.shape
        m = np.pad(m, ((0, hh % 2), (0, ww % 2)))
        m = m.reshape(m.shape[0] // 2, 2, m.shape[1] // 2, 2).any(axis=(1, 3))
        s *= 2
        sizes.append(s)
        counts.append(int(m.sum()))
    return np.array(sizes, float), np.array(counts, float)


def _smooth(p: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along a polyline, ends extended by point reflection."""
    n = len(p)
    k = min(n - 1, int(math.ceil(4 * sigma)))
    if k < 1 or sigma <= 0:
        return p.astype(float)
    head = 2 * p[0] - p[k:0:-1]
    tail = 2 * p[-1] - p[-2 : -k - 2 : -1]
    ext = np.concatenate([head, p, tail]).astype(float)
    return ndi.gaussian_filter1d(ext, sigma, axis=0, mode="nearest")[k : k + n]


def segment_tortuosity(coords: np.ndarray, sigma: float | None = None,
                       kappa_min: float | None = None) -> tuple[float, float, float]:
    """(distance, squared-curvature, density) tortuosity of one ordered segment.

    ``coords``: (n, 2) pixel centres in walking order, consecutive ones
    8-adjacent. See the module docstring for the definitions.
    """
    sigma = SMOOTH_SIGMA if sigma is None else sigma
    kappa_min = KAPPA_MIN if kappa_min is None else kappa_min
    p = _smooth(np.asarray(coords, float), sigma)
    steps = np.hypot(*np.diff(p, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(steps)])
    arc = cum[-1]
    chord = float(np.hypot(*(p[-1] - p[0])))
    if arc <= 0 or chord <= 0:
        return math.nan, math.nan, math.nan
    d1 = np.gradient(p, axis=0)
    d2 = np.gradient(d1, axis=0)
    speed = np.hypot(d1[:, 0], d1[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]) / speed**3
    kappa = np.nan_to_num(kappa)
    sct = float(np.sum(kappa**2 * speed) / arc)

    edge = min(int(math.ceil(2 * sigma)), len(p) // 4)
    sig = edge + np.flatnonzero(np.abs(kappa[edge : len(p) - edge]) > kappa_min)
    cuts = []
    if len(sig) > 1:
        sgn = np.sign(kappa[sig])
        flip = np.flatnonzero(sgn[1:] != sgn[:-1])
        cuts = [(sig[i] + sig[i + 1]) // 2 for i in flip]
    n = len(cuts) + 1
    td = 0.0
    if n > 1:
        bounds = [0, *cuts, len(p) - 1]
        total = 0.0
        for a, b in zip(bounds[:-1], bounds[1:]):
            c = float(np.hypot(*(p[b] - p[a])))
            if c > 0:
                total += (cum[b] - cum[a]) / c - 1.0
        td = (n - 1) / n * total / arc
    return arc / chord, sct, td


@dataclass(eq=False)
class VesselMap:
    """One binary vessel map (restricted to its FOV) with lazily shared derivatives.

    The skeleton, distance transform, junctions and ordered segments are each
    computed once and reused by every feature and by ``agreement``.
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
    def of(cls, mask, fov=None) -> "VesselMap":
        if isinstance(mask, VesselMap):
            if fov is not None and (mask.fov is None or not np.array_equal(mask.fov, np.asarray(fov, bool))):
                return cls(mask.mask, fov)
            return mask
        return cls(mask, fov)

    # -- shared derivatives -------------------------------------------------
    @cached_property
    def area(self) -> int:
        return int(self.mask.sum())

    @cached_property
    def fov_area(self) -> int:
        return int(self.fov.sum()) if self.fov is not None else self.mask.size

    @cached_property
    def skeleton(self) -> np.ndarray:
        return _minimal_skeleton(self.mask)

    @cached_property
    def degree(self) -> np.ndarray:
        """Number of 8-neighbours on the skeleton (0 off it)."""
        sk = self.skeleton.astype(np.uint8)
        nb = ndi.correlate(sk, _EIGHT.astype(np.uint8), mode="constant") - sk
        return nb * sk

    @cached_property
    def edt(self) -> np.ndarray:
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
    def segments(self) -> list[np.ndarray]:
        """Open skeleton segments between junctions/ends, each (n, 2) int, ordered."""
        seg = self.skeleton & ~self.junctions
        idx = np.full(seg.shape, -1, np.int64)
        ys, xs = np.nonzero(seg)
        n = len(ys)
        if n == 0:
            return []
        idx[ys, xs] = np.arange(n)
        # links to the E, S, SE and SW neighbours (each undirected pair once)
        a_list, b_list = [], []
        p = np.pad(idx, 1, constant_values=-1)
        for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
            nb = p[1 + dy : 1 + dy + seg.shape[0], 1 + dx : 1 + dx + seg.shape[1]]
            ok = (idx >= 0) & (nb >= 0)
            a_list.append(idx[ok])
            b_list.append(nb[ok])
        a = np.concatenate(a_list)
        b = np.concatenate(b_list)
        deg = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
        labels, _ = ndi.label(seg, _EIGHT)
        lab = labels[ys, xs]
        ends = np.flatnonzero(deg == 1)
        starts_lab, first = np.unique(lab[ends], return_index=True)
        starts = ends[first]  # one end per open segment; loops have none
        root = n
        rows = np.concatenate([a, np.full(len(starts), root)])
        cols = np.concatenate([b, starts])
        g = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n + 1, n + 1)).tocsr()
        order, pred = depth_first_order(g, root, directed=False, return_predecessors=True)
        order = order[1:]
        breaks = np.flatnonzero(pred[order] == root)
        coords = np.stack([ys, xs], axis=1)
        return [coords[order[s:e]] for s, e in zip(breaks, [*breaks[1:], len(order)])]

    @cached_property
    def interiors(self) -> list[np.ndarray]:
        """Segments with round(EDT) pixels trimmed off each end (cap / junction zone)."""
        out = []
        for s in self.segments:
            a = int(round(self.edt[tuple(s[0])]))
            b = int(round(self.edt[tuple(s[-1])]))
            if len(s) > a + b:
                out.append(s[a : len(s) - b])
        return out

    @cached_property
    def trimmed(self) -> np.ndarray:
        """Skeleton pixels left out of width sampling: junctions and trimmed ends."""
        keep = self.skeleton & ~self.junctions
        for s in self.segments:
            keep[s[:, 0], s[:, 1]] = False
        for s in self.interiors:
            keep[s[:, 0], s[:, 1]] = True
        # loops (no end, not in any segment) stay in ``keep`` via the first line
        return self.skeleton & ~keep

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
        # diagonal links without a common 4-neighbour on the skeleton
        se = sk & sh(1, 1) & ~sh(0, 1) & ~sh(1, 0)
        sw = sk & sh(1, -1) & ~sh(0, -1) & ~sh(1, 0)
        return float(ortho + math.sqrt(2) * int(se.sum() + sw.sum()))

    def widths(self) -> tuple[float, float]:
        sk = self.skeleton
        n_sk = int(sk.sum())
        if n_sk == 0:
            return math.nan, math.nan
        sel = sk & ~self.trimmed
        if not sel.any():
            sel = sk
        ridge = ndi.maximum_filter(self.edt, size=3, mode="constant")
        return float(np.mean(2.0 * ridge[sel] - 1.0)), self.area / n_sk

    def tortuosities(self) -> tuple[float, float, float, int]:
        vals = [segment_tortuosity(s) for s in self.segments if len(s) >= MIN_SEGMENT_PX]
        vals = [v for v in vals if not math.isnan(v[0])]
        if not vals:
            return math.nan, math.nan, math.nan, 0
        dt, sct, td = np.mean(np.array(vals), axis=0)
        return float(dt), float(sct), float(td), len(vals)

    def features(self) -> dict[str, float]:
        if self._features is None:
            width, width_area = self.widths()
            dt, sct, td, nseg = self.tortuosities()
            self._features = {
                "density": self.area / self.fov_area if self.fov_area else math.nan,
                "fractal_dimension": self.fractal_dimension(),
                "average_width": width,
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


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def agreement(reference, test, fov=None) -> dict[str, float]:
    """Overlap, centre-line and topology agreement of ``test`` with ``reference``.

    Either argument may be a ``VesselMap`` (its skeleton etc. are reused).
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
        cl = 0.0 if tprec + tsens == 0 else 2 * tprec * tsens / (tprec + tsens)
    out = {
        "dice": _dice(r.mask, t.mask),
        "cldice": cl,
        "betti0_error": float(abs(r.components - t.components)),
        "betti1_error": float(abs(r.holes - t.holes)),
    }
    fr, ft = r.features(), t.features()
    out.update({f"delta_{k}": ft[k] - fr[k] for k in FEATURES})
    return out
