"""Camera shifts: how another fundus camera changes a photograph, as plain operations.

The vessel U-Net judges reconstructions of whatever camera a user's data comes from
(UK Biobank, EyePACS), not only DRIVE's. Trained on DRIVE alone it over-segments a new
camera, so it trains with random draws of these shifts (`CameraJitter`, used by
`patches.py`), and `benchmarks/segmenter_shift.py` measures its Dice under fixed ones
(`SHIFTS`). Keeping both in one file means the benchmark and the augmentation cannot
drift apart in what "gamma" or "blur" mean.

Images are float32 (H, W, 3) in [0, 1] with a bool (H, W) field of view; every
operation keeps the outside of the FOV black, and the ones that mix neighbouring
pixels (blur, resolution loss) do so without pulling the black surround into the
fundus (normalised convolution / FOV-weighted resampling), as a camera's optics
never see the mask that is drawn afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np

from ablate.errors import InvalidInput


def _inside(x: np.ndarray, fov: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * fov[..., None]).astype(np.float32)


def gamma(x: np.ndarray, fov: np.ndarray, g: float) -> np.ndarray:
    """x ** g: g < 1 brightens the mid-tones (an over-exposed camera), g > 1 darkens them."""
    return _inside(np.clip(x, 0, 1) ** g, fov)


def contrast(x: np.ndarray, fov: np.ndarray, c: float) -> np.ndarray:
    """Contrast scaled by `c` about the FOV's mean intensity (one mean over the channels,
    so colour balance is kept)."""
    if not fov.any():
        return _inside(x, fov)
    m = x[fov].mean()
    return _inside((x - m) * c + m, fov)


def brightness(x: np.ndarray, fov: np.ndarray, b: float) -> np.ndarray:
    return _inside(x * b, fov)


def channel_gain(x: np.ndarray, fov: np.ndarray, gains) -> np.ndarray:
    """Per-channel gain (white balance)."""
    return _inside(x * np.asarray(gains, np.float32), fov)


def hue_shift(x: np.ndarray, fov: np.ndarray, turns: float) -> np.ndarray:
    """Rotate every pixel's hue by `turns` of the colour wheel (0.05 = 18 degrees)."""
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(np.clip(x, 0, 1))
    hsv[..., 0] = (hsv[..., 0] + turns) % 1.0
    return _inside(hsv2rgb(hsv), fov)


def blur(x: np.ndarray, fov: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of `sigma` px inside the FOV (normalised convolution: the surround
    adds nothing)."""
    if sigma <= 0:
        return _inside(x, fov)
    from scipy.ndimage import gaussian_filter

    w = fov.astype(np.float32)
    num = gaussian_filter(x * w[..., None], sigma=(sigma, sigma, 0))
    den = gaussian_filter(w, sigma=sigma)[..., None]
    return _inside(num / np.maximum(den, 1e-6), fov)


def low_resolution(x: np.ndarray, fov: np.ndarray, factor: float) -> np.ndarray:
    """Down to `factor` of the side (area averaging) and back up (bilinear): a camera of
    lower resolution whose photographs were resized to this size."""
    if factor >= 1:
        return _inside(x, fov)
    from PIL import Image

    h, w = fov.shape
    small = (max(1, round(w * factor)), max(1, round(h * factor)))
    wf = fov.astype(np.float32)

    def there_and_back(a: np.ndarray) -> np.ndarray:
        im = Image.fromarray(a.astype(np.float32), mode="F")
        return np.asarray(im.resize(small, Image.Resampling.BOX).resize((w, h), Image.Resampling.BILINEAR))

    den = there_and_back(wf)
    out = np.stack([there_and_back(x[..., c] * wf) for c in range(3)], axis=-1)
    return _inside(out / np.maximum(den, 1e-6)[..., None], fov)


def noise(x: np.ndarray, fov: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian sensor noise of `sigma` (in [0, 1] units)."""
    return _inside(x + rng.normal(0, sigma, size=x.shape).astype(np.float32), fov)


# The fixed shifts the robustness benchmark applies (issue #14's list), by name.
SHIFTS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "none": lambda x, f: _inside(x, f),
    "gamma 0.6": lambda x, f: gamma(x, f, 0.6),
    "gamma 1.6": lambda x, f: gamma(x, f, 1.6),
    "contrast x0.6": lambda x, f: contrast(x, f, 0.6),
    "blur sigma 1.5": lambda x, f: blur(x, f, 1.5),
    "downscale x0.5": lambda x, f: low_resolution(x, f, 0.5),
    "hue +0.05": lambda x, f: hue_shift(x, f, 0.05),
    "hue -0.05": lambda x, f: hue_shift(x, f, -0.05),
}


@dataclass(frozen=True)
class CameraJitter:
    """One random camera per draw, for training. Ranges cover the benchmark's shifts
    (gamma 0.6-1.6, contrast x0.6, blur 1.5 px, half resolution, hue 0.05) with a
    margin, so robustness is learnt rather than extrapolated; each blur / resolution
    loss applies to a fraction of the draws so sharp images stay the majority.

    Args:
        rotate_deg: rotation within +-this, degrees (geometry, applied with the masks).
        zoom: scale drawn log-uniformly from [1/zoom, zoom] about the centre, with the
            masks: vessel calibres in px of a camera with another field angle.
        brightness, contrast: factors drawn from 1 +- this.
        channel_gain: per-channel factors from 1 +- this (white balance).
        gamma: exponent drawn log-uniformly from [1/gamma, gamma].
        hue: hue rotation drawn from +-this turns.
        blur_p, blur_sigma: with probability blur_p, a Gaussian blur of sigma ~ U(0.3, blur_sigma) px.
        lowres_p, lowres: with probability lowres_p, resolution reduced to ~ U(lowres, 1) and back.
        noise: Gaussian noise of sigma ~ U(0, noise).
    """
    rotate_deg: float = 15.0
    zoom: float = 1.15
    brightness: float = 0.2
    contrast: float = 0.45
    channel_gain: float = 0.1
    gamma: float = 1.8
    hue: float = 0.07
    blur_p: float = 0.4
    blur_sigma: float = 2.0
    lowres_p: float = 0.3
    lowres: float = 0.4
    noise: float = 0.03

    @property
    def has_photometric(self) -> bool:
        """False when every photometric draw is the identity (`zoom_only`): nothing to render."""
        return bool(self.brightness or self.contrast or self.channel_gain or self.gamma != 1 or self.hue
                    or self.blur_p or self.lowres_p or self.noise)

    def photometric(self, x: np.ndarray, fov: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random camera's rendering of float (H, W, 3) `x` (geometry is `geometric`)."""
        if not fov.any():
            return _inside(x, fov)
        x = brightness(x, fov, rng.uniform(1 - self.brightness, 1 + self.brightness))
        x = contrast(x, fov, rng.uniform(1 - self.contrast, 1 + self.contrast))
        x = channel_gain(x, fov, rng.uniform(1 - self.channel_gain, 1 + self.channel_gain, size=3))
        x = gamma(x, fov, float(np.exp(rng.uniform(-math.log(self.gamma), math.log(self.gamma)))))
        if self.hue > 0:
            x = hue_shift(x, fov, rng.uniform(-self.hue, self.hue))
        if rng.random() < self.blur_p:
            x = blur(x, fov, rng.uniform(0.3, self.blur_sigma))
        if rng.random() < self.lowres_p:
            x = low_resolution(x, fov, rng.uniform(self.lowres, 1.0))
        if self.noise > 0:
            x = noise(x, fov, rng.uniform(0, self.noise), rng)
        return x

    def geometry(self, rng: np.random.Generator) -> tuple[float, float]:
        """(rotation in degrees, zoom factor) of one draw."""
        angle = float(rng.uniform(-self.rotate_deg, self.rotate_deg)) if self.rotate_deg > 0 else 0.0
        z = float(np.exp(rng.uniform(-math.log(self.zoom), math.log(self.zoom)))) if self.zoom > 1 else 1.0
        return angle, z


class CameraAugmentation(str, Enum):
    """`ablate segmenter train --camera`: `on`, a random camera per image (CameraJitter: rotation,
    photometry, blur, resolution loss, noise); `off`, none of these. The scale jitter (`--zoom`)
    is set apart from it, so each can be measured alone (benchmarks/segmenter_transfer.py)."""
    ON = "on"
    OFF = "off"


DEFAULT_ZOOM = CameraJitter.zoom
MAX_ZOOM = 2.0  # beyond it a zoomed-in draw keeps under a quarter of the FOV


def training_jitter(camera: CameraAugmentation | str = CameraAugmentation.ON,
                    zoom: float = DEFAULT_ZOOM) -> CameraJitter | None:
    """The augmentation `ablate segmenter train` applies to each whole image; None: none at all
    (the patches' flips and quarter turns stay).

    Args:
        camera: CameraAugmentation (or its value).
        zoom: scale jitter, drawn log-uniformly from [1/zoom, zoom]; 1 turns it off.
    """
    try:
        cam = CameraAugmentation(camera)
    except ValueError:
        raise InvalidInput(f"camera must be one of {[c.value for c in CameraAugmentation]}, got {camera!r}") from None
    if isinstance(zoom, bool) or not isinstance(zoom, (int, float)) or not 1.0 <= zoom <= MAX_ZOOM:
        raise InvalidInput(f"zoom must be a number in [1, {MAX_ZOOM}] (1: no scale jitter), got {zoom!r}")
    if cam is CameraAugmentation.ON:
        return CameraJitter(zoom=float(zoom))
    if zoom == 1:
        return None
    return replace(CameraJitter(), rotate_deg=0.0, brightness=0.0, contrast=0.0, channel_gain=0.0, gamma=1.0,
                   hue=0.0, blur_p=0.0, lowres_p=0.0, noise=0.0, zoom=float(zoom))
