"""What the vessel U-Net sees of a photograph: its input normalisation.

One function (`normalise_image`) used alike when training (patches.py: on each whole
augmented image, before its FOV statistics are taken and patches cropped) and when
predicting (unet.py: on each image at the model's size), so the two cannot drift apart.
The choice is recorded in the U-Net file ("input"; files from before it: rgb) and the
loaded segmenter applies it.

- rgb: the photograph as it is.
- clahe-green: the green channel (where vessels contrast most), the surround filled with the
  nearest fundus value (ridge.fill_outside: no step at the rim for the equaliser to
  amplify), contrast-limited adaptive histogram equalisation (scikit-image
  `equalize_adapthist`, clip 0.01, tiles of 1/8 of the side: the ridge fallback's), stored
  back to 8 bits inside the FOV and put in all three channels, so the U-Net, its per-channel
  FOV standardisation (unet.standardize, applied after this in both cases) and its file keep
  their shape. The first convolution then sees three equal channels.

Why offer it: CLAHE takes out a camera's illumination, contrast and colour cast locally,
which the per-image standardisation only does globally; whether that makes the U-Net travel
better to another camera is measured in benchmarks/segmenter_transfer.py.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from ablate.errors import InvalidInput


class InputNorm(str, Enum):
    RGB = "rgb"
    CLAHE_GREEN = "clahe-green"


CLAHE_CLIP = 0.01  # the ridge fallback's clip limit
# `ablate segmenter train`'s default since issue 31: trained on DRIVE at 128 px, it scored
# Dice 0.712 / 0.700 on STARE (two seeds) against 0.679 / 0.661 with rgb, and as well on DRIVE
# (0.771 / 0.761 against 0.768 / 0.757); BENCHMARKS.md, "What of the vessel judge's training
# transfers". U-Net files from before it say nothing and are read as rgb.
DEFAULT_INPUT = InputNorm.CLAHE_GREEN


def input_norm(value: InputNorm | str) -> InputNorm:
    """`value` as an InputNorm; InvalidInput naming the option and the choices otherwise."""
    try:
        return InputNorm(value)
    except ValueError:
        raise InvalidInput(f"input must be one of {[n.value for n in InputNorm]}, got {value!r}") from None


def clahe_green(image: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """(H, W) uint8: the CLAHE'd green channel of an (H, W, 3) uint8 image, 0 outside the bool FOV."""
    from skimage.exposure import equalize_adapthist

    from ablate.segmenter.ridge import FILL_INSET_512, fill_outside

    if not fov.any():
        return np.zeros(fov.shape, np.uint8)
    g = image[..., 1].astype(np.float64) / 255
    g = fill_outside(g, fov, max(1, round(FILL_INSET_512 * max(fov.shape) / 512)))
    eq = equalize_adapthist(np.clip(g, 0, 1), clip_limit=CLAHE_CLIP)
    return ((np.clip(eq, 0, 1) * 255 + 0.5).astype(np.uint8) * fov).astype(np.uint8)


def normalise_image(image: np.ndarray, fov: np.ndarray, norm: InputNorm) -> np.ndarray:
    """The U-Net's (H, W, 3) uint8 input for an (H, W, 3) uint8 image and (H, W) bool FOV."""
    if norm is InputNorm.RGB:
        return image
    if norm is InputNorm.CLAHE_GREEN:
        return np.repeat(clahe_green(image, fov)[..., None], 3, axis=-1)
    raise InvalidInput(f"unknown input normalisation {norm!r}")
