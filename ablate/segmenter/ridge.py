"""The classical fallback segmenter (ridge filter + Otsu; see ablate.segmenter.protocol's
docstring) and the FOV rim rule every segmenter's vessel maps obey.

The rim: a prepared image is black outside its FOV, and the fundus just inside the edge is
darker still (vignetting, resampling). A ridge filter takes that edge for a dark vessel and
draws a closed ring along the FOV; a U-Net on a new camera can too. So (1) the ridge filter
sees the surround filled with the nearest fundus value (``fill_outside``: no step to find),
and (2) nothing within ``rim_px`` (16 px at 512, scaled with the side) of the FOV edge counts
as vessel in an evaluation map (``inside_rim``, applied by ablate.evaluate.reconstruct).
The band is that wide because a blurred reconstruction (every arm of a 128 px study is about
a Gaussian blur of sigma 2.2-2.7 px of its original) smears the FOV edge into a ridge the filter
still finds 1-2 px further in: with the band at 8 px (at 512), Meijering drew a ring of density
0.37 in the 2-3 px band at 128 px against 0.03 inside (issue 27). At 16 px no 1-px band just
inside it holds more than the FOV interior's density, for either ridge family, at 128-512 px
(tests/segmenter/test_ridge.py measures the table).
"""

from __future__ import annotations

import numpy as np
import torch

from ablate.errors import InvalidInput
from ablate.segmenter.inputs import check_segmenter_inputs as _check_images
from ablate.segmenter.inputs import fov_from_images

RIDGE_FAMILIES = ("meijering", "frangi")
RIDGE_SIGMAS_512 = (1.0, 2.0, 3.0)
RIDGE_ERODE_512 = 6
RIM_512 = 16  # px at 512 (scaled with the side): the band inside the FOV edge that is never vessel
FILL_INSET_512 = 4  # px at 512: the FOV's own rim pixels (darker) replaced too by fill_outside


def rim_px(side: int) -> int:
    """Width of the band inside the FOV edge where nothing counts as vessel: RIM_512 at 512 px."""
    return max(2, round(RIM_512 * side / 512))


def inside_rim(fov: np.ndarray) -> np.ndarray:
    """(..., H, W) bool FOV(s) less the rim band: pixels more than rim_px of the side (Euclidean)
    from every pixel outside the FOV (the image border counting as outside): where a vessel may be."""
    from scipy import ndimage

    fov = np.asarray(fov, bool)
    k = rim_px(max(fov.shape[-2:]))
    flat = fov.reshape(-1, *fov.shape[-2:])
    out = np.stack([ndimage.distance_transform_edt(np.pad(f, 1))[1:-1, 1:-1] > k for f in flat])
    return out.reshape(fov.shape)


def fill_outside(g: np.ndarray, fov: np.ndarray, inset: int) -> np.ndarray:
    """`g` with every pixel outside the FOV eroded by `inset` px set to the value of the nearest
    pixel inside it: no step at the rim for a ridge filter (or CLAHE) to find. The inset skips
    the rim's own pixels, which resampling and vignetting leave darker than the fundus."""
    from scipy import ndimage

    inner = ndimage.binary_erosion(fov, iterations=inset) if inset > 0 else fov
    if inner.sum() < 16:
        inner = fov
    if not inner.any():
        return g
    _, (iy, ix) = ndimage.distance_transform_edt(~inner, return_indices=True)
    return g[iy, ix]


class RidgeSegmenter:
    """Ridge filter + Otsu threshold (scikit-image, numpy, CPU); see the module docstring."""

    threshold = 0.5

    def __init__(self, family: str = "meijering", sigmas_512: tuple[float, ...] = RIDGE_SIGMAS_512,
                 clahe: bool = True, erode_512: int = RIDGE_ERODE_512):
        if family not in RIDGE_FAMILIES:
            raise InvalidInput(f"ridge family must be one of {list(RIDGE_FAMILIES)}, got {family!r}")
        self.family, self.sigmas_512, self.clahe, self.erode_512 = family, tuple(sigmas_512), clahe, erode_512
        self.name = f"ridge:{family}+otsu"

    def response(self, green: np.ndarray, fov: np.ndarray) -> np.ndarray:
        """Ridge response of one (H, W) green channel in [0, 1] (dark ridges), 0 outside the FOV."""
        from skimage import filters
        from skimage.exposure import equalize_adapthist

        scale = max(green.shape) / 512
        g = fill_outside(green.astype(np.float64), fov, max(1, round(FILL_INSET_512 * scale)))
        if self.clahe:
            g = equalize_adapthist(np.clip(g, 0, 1), clip_limit=0.01)
        sigmas = [max(0.5, s * scale) for s in self.sigmas_512]
        if self.family == "meijering":
            r = filters.meijering(g, sigmas=sigmas, black_ridges=True)
        else:
            # Frangi's vesselness is heavy-tailed: Otsu on it keeps only the widest vessels;
            # its square root (same ranking) gives Otsu a usable histogram.
            r = np.sqrt(np.clip(filters.frangi(g, sigmas=sigmas, black_ridges=True), 0, None))
        return np.where(fov, r, 0.0)

    def level(self, green: np.ndarray, fov: np.ndarray, r: np.ndarray | None = None) -> float:
        """Otsu threshold of one image's ridge response over the FOV eroded by 6 px (at 512);
        NaN for an empty FOV or a flat response (no ridge anywhere)."""
        from scipy import ndimage
        from skimage.filters import threshold_otsu

        if not fov.any():
            return float("nan")
        r = self.response(green, fov) if r is None else r
        iters = max(1, round(self.erode_512 * max(green.shape) / 512))
        inner = ndimage.binary_erosion(fov, iterations=iters)
        ref = r[inner] if inner.sum() >= 16 else r[fov]
        if ref.max() <= ref.min():
            return float("nan")
        return float(threshold_otsu(ref))

    def predict_one(self, green: np.ndarray, fov: np.ndarray, level: float | None = None) -> np.ndarray:
        """Probability of one image; `level` replaces this image's own Otsu threshold (so a
        reconstruction is cut at its original's level: ``levels``)."""
        if not fov.any():
            return np.zeros(green.shape, np.float32)
        r = self.response(green, fov)
        t = self.level(green, fov, r) if level is None else float(level)
        if not np.isfinite(t):  # flat response: no ridge anywhere
            return np.zeros(green.shape, np.float32)
        top = max(float(r[fov].max()), t + 1e-12)
        prob = np.where(r <= t, 0.5 * r / max(t, 1e-12), 0.5 + 0.5 * (r - t) / (top - t))
        return (np.clip(prob, 0, 1) * fov).astype(np.float32)

    def levels(self, images: torch.Tensor, fov: torch.Tensor | None = None) -> np.ndarray:
        """(B,) each image's Otsu level of the ridge response."""
        _check_images(images, fov)
        fov = fov_from_images(images) if fov is None else fov.bool()
        g, f = images[:, 1].detach().float().cpu().numpy(), fov.cpu().numpy()
        return np.array([self.level(g[i], f[i]) for i in range(g.shape[0])])

    def predict(self, images: torch.Tensor, fov: torch.Tensor | None = None,
                levels: np.ndarray | None = None) -> torch.Tensor:
        _check_images(images, fov)
        fov = fov_from_images(images) if fov is None else fov.bool()
        g = images[:, 1].detach().float().cpu().numpy()
        f = fov.cpu().numpy()
        if levels is not None and len(levels) != g.shape[0]:
            raise ValueError(f"ridge segmenter: {len(levels)} levels for {g.shape[0]} images")
        out = np.stack([self.predict_one(g[i], f[i], None if levels is None else levels[i]) for i in range(g.shape[0])])
        return torch.from_numpy(out).to(images.device)
