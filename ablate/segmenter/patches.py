"""The segmenter's training data, made by Ray Data as it streams: each row's image,
FOV and vessel mask decoded and augmented as a whole (rotation and zoom with the masks;
one random camera inside the FOV: brightness, contrast, white balance, gamma, hue,
blur, resolution loss, noise; see camera.py; or only some of these, or none: `training_jitter`),
put in the U-Net's input normalisation (input_norm.py: as it is, or its CLAHE'd green), its
FOV statistics taken (the U-Net's input standardisation), then square patches cropped around
FOV pixels, each flipped and turned by a random multiple of 90 degrees. Validation reads
whole images, in the same input normalisation."""

from __future__ import annotations

import math

import numpy as np

from ablate.segmenter.camera import CameraJitter
from ablate.segmenter.input_norm import InputNorm, normalise_image
from ablate.segmenter.unet import fov_stats_numpy

COLUMNS = ["image", "fov", "vessel"]


def _affine(arr: np.ndarray, angle: float, zoom: float, mask: bool) -> np.ndarray:
    """Rotate by `angle` degrees and scale by `zoom` about the centre (bilinear, black fill);
    masks are resampled as 0/255 and cut again at half."""
    from PIL import Image

    h, w = arr.shape[:2]
    cx, cy = (w - 1) / 2, (h - 1) / 2
    t = math.radians(angle)
    # PIL maps each output pixel to an input position: the inverse of rotate-then-zoom.
    a, b = math.cos(t) / zoom, math.sin(t) / zoom
    d, e = -math.sin(t) / zoom, math.cos(t) / zoom
    coeffs = (a, b, cx - a * cx - b * cy, d, e, cy - d * cx - e * cy)
    src = Image.fromarray(np.ascontiguousarray(arr.astype(np.uint8) * 255 if mask else arr))
    out = np.asarray(src.transform((w, h), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR, fillcolor=0))
    return out >= 128 if mask else out


def augment_image(img: np.ndarray, fov: np.ndarray, vessel: np.ndarray, rng: np.random.Generator,
                  j: CameraJitter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole-image augmentation of (S, S, 3) uint8, (S, S) bool FOV and vessel mask: one
    random camera (`camera.CameraJitter`), geometry applied to image and masks alike."""
    angle, zoom = j.geometry(rng)
    if angle or zoom != 1:
        img = _affine(img, angle, zoom, False)
        fov = _affine(fov, angle, zoom, True)
        vessel = _affine(vessel, angle, zoom, True) & fov
    if not j.has_photometric:
        return img * fov[..., None].astype(np.uint8), fov, vessel
    x = j.photometric(img.astype(np.float32) / 255, fov, rng)
    img = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8) * fov[..., None]
    return img, fov, vessel


def crop_patches(img: np.ndarray, fov: np.ndarray, vessel: np.ndarray, patch: int, n: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` random (patch x patch) crops centred on FOV pixels, each flipped / turned by 90 deg at random.
    Returns image (n, 3, P, P) uint8, fov (n, P, P) uint8 0/255, vessel (n, P, P) uint8 0/255."""
    s = img.shape[0]
    rows, cols = np.nonzero(fov)
    if rows.size == 0:
        rows, cols = np.array([s // 2]), np.array([s // 2])
    pick = rng.integers(0, rows.size, size=n)
    out_i = np.empty((n, 3, patch, patch), np.uint8)
    out_f = np.empty((n, patch, patch), np.uint8)
    out_v = np.empty((n, patch, patch), np.uint8)
    for k, idx in enumerate(pick):
        r0 = int(np.clip(rows[idx] - patch // 2, 0, s - patch))
        c0 = int(np.clip(cols[idx] - patch // 2, 0, s - patch))
        pi = img[r0 : r0 + patch, c0 : c0 + patch].transpose(2, 0, 1)
        pf = fov[r0 : r0 + patch, c0 : c0 + patch]
        pv = vessel[r0 : r0 + patch, c0 : c0 + patch]
        turns, flip = int(rng.integers(0, 4)), bool(rng.random() < 0.5)
        pi, pf, pv = (np.rot90(a, turns, axes=(-2, -1)) for a in (pi, pf, pv))
        if flip:
            pi, pf, pv = pi[..., ::-1], pf[..., ::-1], pv[..., ::-1]
        out_i[k], out_f[k], out_v[k] = pi, pf * np.uint8(255), pv * np.uint8(255)
    return out_i, out_f, out_v


def _decode_row(image: bytes, fov: bytes, vessel: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from ablate.data.preprocess import decode_png

    return decode_png(image), decode_png(fov) > 127, decode_png(vessel) > 127


class PatchSampler:
    """map_batches callable: rows {image, fov, vessel: PNG bytes} -> augmented patches
    {image (N,3,P,P) uint8 in the input normalisation, fov, vessel (N,P,P) uint8 0/255, stats
    (N,6) float32: the whole augmented, normalised image's FOV statistics}, `patches_per_image`
    per row. jitter None: no whole-image augmentation."""

    def __init__(self, patch: int, patches_per_image: int, jitter: CameraJitter | None = CameraJitter(),
                 norm: InputNorm = InputNorm.RGB):
        self.patch, self.n, self.jitter, self.norm = patch, patches_per_image, jitter, norm

    def __call__(self, batch: dict) -> dict:
        rng = np.random.default_rng()
        imgs, fovs, vessels, stats = [], [], [], []
        for data in zip(batch["image"], batch["fov"], batch["vessel"]):
            img, fov, ves = _decode_row(*data)
            if self.jitter is not None:
                img, fov, ves = augment_image(img, fov, ves, rng, self.jitter)
            img = normalise_image(img, fov, self.norm)
            st = fov_stats_numpy(img, fov)
            pi, pf, pv = crop_patches(img, fov, ves, self.patch, self.n, rng)
            imgs.append(pi)
            fovs.append(pf)
            vessels.append(pv)
            stats.append(np.repeat(st[None], self.n, 0))
        p = self.patch
        if not imgs:
            return {"image": np.zeros((0, 3, p, p), np.uint8), "fov": np.zeros((0, p, p), np.uint8),
                    "vessel": np.zeros((0, p, p), np.uint8), "stats": np.zeros((0, 6), np.float32)}
        return {"image": np.concatenate(imgs), "fov": np.concatenate(fovs), "vessel": np.concatenate(vessels),
                "stats": np.concatenate(stats)}


class WholeImages:
    """map_batches callable for validation: rows -> {image (N,3,S,S) uint8 in the input
    normalisation, fov, vessel (N,S,S) uint8 0/255}."""

    def __init__(self, norm: InputNorm = InputNorm.RGB):
        self.norm = norm

    def __call__(self, batch: dict) -> dict:
        rows = [_decode_row(*d) for d in zip(batch["image"], batch["fov"], batch["vessel"])]
        return {"image": np.stack([normalise_image(r[0], r[1], self.norm).transpose(2, 0, 1) for r in rows]),
                "fov": np.stack([r[1] for r in rows]).astype(np.uint8) * 255,
                "vessel": np.stack([r[2] for r in rows]).astype(np.uint8) * 255}
