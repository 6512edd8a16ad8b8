"""Per-image preprocessing: read, find the field of view, crop, pad square, resize.

Output arrays are uint8. The image is zeroed outside the FOV so every sample
has the same black surround whatever the camera did.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

from ablate.data.guard import (
    DEFAULT_MAX_PIXELS,
    RejectedImage,
    TooManyPixels,
    byte_cap,
    check_aspect,
    check_padded,
    open_header,
    read_once,
)
from ablate.data.soft_reference import soft_resize

MIN_SIDE = 64  # smaller photographs carry no usable vessel detail
__all__ = ["Prepared", "RejectedImage", "decode_png", "png_bytes", "preprocess", "read_mask", "read_rgb"]


@dataclass(frozen=True)
class Prepared:
    image: np.ndarray  # (S, S, 3) uint8
    fov: np.ndarray  # (S, S) bool
    vessel: np.ndarray | None  # (S, S) bool: the binary reference, area fraction >= 0.5
    original_size: tuple[int, int]  # (height, width) of the source photograph
    fov_source: str  # "mask" or "threshold"
    vessel_soft: np.ndarray | None = None  # (S, S) uint8: the soft reference, round(255 * area fraction)


def read_rgb(source: Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """`source`: a file, or its bytes already read (prepare reads each file once, to
    hash it, and decodes from those bytes). Checked from the header before decoding."""
    data = source if isinstance(source, bytes) else read_once(Path(source), byte_cap(max_pixels))
    if not data:
        raise RejectedImage("empty file (0 bytes)")
    im = open_header(data, max_pixels)
    check_aspect(*im.size)
    try:
        im.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise RejectedImage(f"corrupt or truncated image ({e})") from None
    im = _upright(im)
    mode = im.mode
    if mode in ("L", "LA", "1"):
        raise RejectedImage(f"grayscale image (mode {mode}); a colour fundus photograph is needed")
    if mode.startswith("I;16") or mode in ("I", "F"):
        raise RejectedImage(f"single-channel {mode} image; a colour fundus photograph is needed")
    if mode in ("P", "PA", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")  # palette / alpha / other colour spaces carry an RGB picture
    elif mode != "RGB":
        raise RejectedImage(f"unsupported image mode {mode}")
    arr = np.asarray(im)
    if min(arr.shape[:2]) < MIN_SIDE:
        raise RejectedImage(f"too small ({arr.shape[1]}x{arr.shape[0]}); at least {MIN_SIDE} px a side needed")
    return arr


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask must have the image's size, which is checked from its header: the image
    passed the pixel cap, so the mask is never decoded beyond it either."""
    n = shape[0] * shape[1]
    try:
        im = open_header(read_once(path, byte_cap(n)), n)
    except TooManyPixels:
        raise RejectedImage(f"mask {path.name} has more pixels than the image ({shape[1]}x{shape[0]})") from None
    except RejectedImage as e:
        raise RejectedImage(f"mask {path.name} unreadable ({e})") from None
    w, h = im.size
    if _orientation(im) in _SWAPS_SIDES:  # compared as it will be used: upright, as the image
        w, h = h, w
    if (w, h) != (shape[1], shape[0]):
        raise RejectedImage(f"mask {path.name} is {w}x{h}, image is {shape[1]}x{shape[0]}")
    try:
        im.load()
        im = _upright(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise RejectedImage(f"mask {path.name} unreadable ({e})") from None
    return np.asarray(im.convert("L")) > 127


# EXIF orientations 5-8 turn the picture by 90 degrees: width and height swap.
_SWAPS_SIDES = {5, 6, 7, 8}


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except (OSError, SyntaxError, ValueError, TypeError):  # damaged EXIF: the pixels as stored
        return 1


def _upright(im: Image.Image) -> Image.Image:
    """The picture as a viewer shows it: a camera's EXIF orientation tag applied (a phone or
    DSLR held sideways stores the pixels turned), the same for an image and its masks."""
    if _orientation(im) == 1:
        return im
    try:
        return ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise RejectedImage(f"EXIF orientation cannot be applied ({e})") from None


def threshold_fov(rgb: np.ndarray) -> np.ndarray:
    """FOV from the red channel: fundus cameras leave a near-black surround, and
    red is the brightest channel inside the eye. Largest component, holes filled."""
    red = rgb[..., 0].astype(np.float32)
    thr = max(8.0, 0.15 * float(np.percentile(red, 99)))
    mask = red > thr
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    mask = labels == (1 + int(np.argmax(sizes)))
    return fill_holes(mask)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """ndimage.binary_fill_holes's result (background not 4-connected to the image's
    edge becomes foreground), found by one labelling instead of dilating from the edge
    until nothing changes: several times faster on a 2-4 k px photograph."""
    bg, n = ndimage.label(~mask)  # the default structure is binary_fill_holes's cross
    if n == 0:
        return mask.copy()
    outside = np.zeros(n + 1, dtype=bool)
    outside[np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]])] = True
    outside[0] = False  # label 0 is the foreground itself
    return ~outside[bg]


def _square_crop(arr: np.ndarray, bbox: tuple[int, int, int, int]) -> np.ndarray:
    """Crop to bbox (r0, r1, c0, c1) then pad with zeros to a centred square."""
    r0, r1, c0, c1 = bbox
    crop = arr[r0:r1, c0:c1]
    h, w = crop.shape[:2]
    side = max(h, w)
    out = np.zeros((side, side) + crop.shape[2:], dtype=crop.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = crop
    return out


def _resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    # Box filter = area fraction per output pixel, kept where >= 0.5: the binary reference. A vessel
    # under half an output pixel wide vanishes from it; the soft reference keeps it (soft_reference.py).
    im = Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.Resampling.BOX)
    return np.asarray(im) >= 128


def preprocess(image: Path | bytes, size: int, fov: Path | None = None, vessel: Path | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Prepared:
    """`image`: a file or its bytes; `max_pixels`: refuse larger images from their header."""
    rgb = read_rgb(image, max_pixels)
    shape = rgb.shape[:2]
    if fov is not None:
        fov_mask, fov_source = read_mask(fov, shape), "mask"
    else:
        fov_mask, fov_source = threshold_fov(rgb), "threshold"
    if fov_mask.mean() < 0.05:
        raise RejectedImage(f"no field of view found ({fov_source}: {fov_mask.mean():.1%} of pixels)")
    vessel_mask = read_mask(vessel, shape) if vessel is not None else None
    rows, cols = np.flatnonzero(fov_mask.any(axis=1)), np.flatnonzero(fov_mask.any(axis=0))
    bbox = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    check_padded(max(bbox[1] - bbox[0], bbox[3] - bbox[2]), max_pixels)
    rgb = np.where(fov_mask[..., None], rgb, 0).astype(np.uint8)
    sq = _square_crop(rgb, bbox)
    img = np.asarray(Image.fromarray(sq).resize((size, size), Image.Resampling.LANCZOS))
    fov_small = _resize_mask(_square_crop(fov_mask, bbox), size)
    # Zero again at the output size: resampling spreads the rim, and the stored
    # mask must describe exactly which pixels are photograph.
    img = np.where(fov_small[..., None], img, 0).astype(np.uint8)
    vessel_sq = None if vessel_mask is None else _square_crop(vessel_mask, bbox)
    return Prepared(
        image=img,
        fov=fov_small,
        vessel=None if vessel_sq is None else _resize_mask(vessel_sq, size),
        original_size=(int(shape[0]), int(shape[1])),
        fov_source=fov_source,
        vessel_soft=None if vessel_sq is None else soft_resize(vessel_sq, size),
    )


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8) if arr.dtype != bool else arr.astype(np.uint8) * 255).save(
        buf, format="PNG", optimize=False
    )
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))
