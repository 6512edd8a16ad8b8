"""Vessel segmenters that judge reconstructions: a small U-Net and a classical fallback.

Both follow one interface (`Segmenter`): a `name` that results carry, so a table
always says which segmenter drew its vessel maps; `predict(images, fov)` giving a
per-pixel vessel probability in [0, 1] (0 outside the field of view); and a
`threshold` above which a pixel counts as vessel.

Classical fallback (`RidgeSegmenter` in ablate.segmenter.ridge, name "ridge:meijering+otsu" or
"ridge:frangi+otsu"), computed with scikit-image on the CPU (numpy), image by
image: green channel -> surround (and the FOV's outer 4 px at 512) filled with the
nearest fundus value (no rim edge; before issue 14, with the FOV mean, which drew a
vessel ring along the rim) -> CLAHE (`equalize_adapthist`, clip 0.01) -> ridge filter for dark ridges (sigmas
1, 2, 3 px at 512 px, scaled with the image side; Frangi's response square-rooted,
same ranking, as Otsu on its heavy tail keeps only the widest vessels) -> Otsu threshold `t` of the
response over the FOV eroded by 6 px (at 512; the rim's response stays out of
the histogram). Its "probability" is the response mapped piecewise linearly,
[0, t] -> [0, 0.5] and [t, max over the FOV] -> [0.5, 1]: strictly increasing,
so its ROC AUC is the ridge response's own, and `> 0.5` is exactly Otsu's
binary map (`threshold` = 0.5). It is not a calibrated probability.

Where each part lives: the interface here; the U-Net in `unet.py`, its file in
`unet_file.py`; the fallback in `ridge.py`; the scores in `scores.py`; the labelled
images of a prepared split in `labelled.py`; scoring a segmenter on a split in `evaluation.py`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Segmenter(Protocol):
    name: str
    threshold: float

    def predict(self, images: torch.Tensor, fov: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) float RGB in [0, 1], optional (B, H, W) bool FOV -> (B, H, W) vessel probability."""
        ...
