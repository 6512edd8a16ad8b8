"""The built-in default data: a one-eye demo set from scikit-image's CC0 fundus photograph.

`skimage.data.retina()` ships inside the scikit-image wheel, so a fresh machine
can run the main job with no download. It is ONE eye: the variants below
(rotations, flips, exposure changes) let the pipeline run end to end, but no
result on it says anything about fundus images in general.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ablate.cache import cache_root  # re-exported here: the demo folder is cache_root() / 'demo'
from ablate.data.shards import MANIFEST, prepare

N_IMAGES = 24
SPLIT = ["train"] * 16 + ["val"] * 4 + ["test"] * 4
NOTICE = (
    "Using the built-in demo data: variants of ONE fundus photograph (scikit-image's CC0 "
    "`retina`), only good for checking that the pipeline runs. For real results prepare a "
    "dataset (`ablate prepare SRC --out DIR`) and pass `--data DIR`."
)




def _variants(rgb: np.ndarray) -> list[np.ndarray]:
    rng = np.random.default_rng(20250611)
    out = []
    for i in range(N_IMAGES):
        im = Image.fromarray(rgb)
        im = im.rotate(float(i * 360 / N_IMAGES), Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
        if i % 2:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        arr = np.asarray(im).astype(np.float32) / 255
        gamma, gain = rng.uniform(0.8, 1.25), rng.uniform(0.85, 1.1)
        out.append((np.clip(gain * arr**gamma, 0, 1) * 255).round().astype(np.uint8))
    return out


def ensure_demo(size: int = 256, root: Path | None = None) -> Path:
    """Build (once) and return the prepared demo dataset folder."""
    root = root or cache_root() / "demo"
    out = root / f"prepared-{size}"
    if (out / MANIFEST).is_file():
        return out
    from skimage.data import retina

    raw = root / "raw"
    (raw / "images").mkdir(parents=True, exist_ok=True)
    # Shrink the 1411 px original first: variants at twice the target size lose
    # nothing the prepared images keep, and building the set stays a few seconds.
    side = min(1411, max(512, 2 * size))
    source = np.asarray(Image.fromarray(retina()).resize((side, side), Image.Resampling.LANCZOS))
    for i, arr in enumerate(_variants(source)):
        path = raw / "images" / f"retina_{i:02d}.png"
        if not path.exists():
            tmp = path.with_suffix(".tmp.png")
            Image.fromarray(arr).save(tmp)
            os.replace(tmp, path)
    split_csv = "stem,split\n" + "".join(f"retina_{i:02d},{s}\n" for i, s in enumerate(SPLIT))
    (raw / "split.csv").write_text(split_csv)
    # The split is given, so no val is carved from train.
    prepare(raw, out, size=size, val_from_train=0.0)
    return out
