"""Ray Data streams over prepared shards: read Parquet, decode PNG, augment.

Batches leave `map_batches` as uint8 NCHW arrays (4x lighter in the object
store than float); the training loop divides by 255 on its device.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ablate.config import AugmentSpec
from ablate.data.preprocess import decode_png
from ablate.data.shards import read_manifest, shard_paths


class DecodeAugment:
    """map_batches callable: {"id", "image": PNG bytes} -> {"image": uint8 (N, 3, S, S), "key": int64 (N,)}.

    `key` is the image's content id as an integer, so a worker can tell which
    images it saw (sharding checks) without strings in a tensor batch.

    Augmentation draws from a fresh generator per batch, so it differs every
    epoch (what augmentation is for); model init and data order are what the
    trial seed fixes.
    """

    def __init__(self, size: int, augment: AugmentSpec | None):
        self.size, self.augment = size, augment

    def _one(self, data: bytes, rng: np.random.Generator) -> np.ndarray:
        img = decode_png(data)
        if img.shape[0] != self.size:
            img = np.asarray(Image.fromarray(img).resize((self.size, self.size), Image.Resampling.LANCZOS))
        a = self.augment
        if a is not None:
            if a.hflip and rng.random() < 0.5:
                img = img[:, ::-1]
            if a.vflip and rng.random() < 0.5:
                img = img[::-1]
            if a.rotate_deg > 0:
                angle = float(rng.uniform(-a.rotate_deg, a.rotate_deg))
                # The surround is black already, so filling with 0 adds no new edge.
                img = np.asarray(Image.fromarray(np.ascontiguousarray(img)).rotate(angle, Image.Resampling.BILINEAR, fillcolor=0))
        return np.ascontiguousarray(img.transpose(2, 0, 1))

    def __call__(self, batch: dict) -> dict:
        rng = np.random.default_rng()
        images = np.stack([self._one(d, rng) for d in batch["image"]]) if len(batch["image"]) else np.zeros((0, 3, self.size, self.size), np.uint8)
        keys = np.array([int(str(i)[:15], 16) for i in batch["id"]], dtype=np.int64)
        return {"image": images, "key": keys}


def split_dataset(data_dir: str, split: str, size: int, augment: AugmentSpec | None, verify: bool = True):
    """A Ray Dataset of one split, decoded (and augmented when `augment` is given).
    `verify=False` skips the shard checksums when the caller has just checked them."""
    import ray.data

    manifest = read_manifest(data_dir)
    if size > manifest["image_size"]:
        raise ValueError(
            f"{data_dir}: prepared at {manifest['image_size']} px, trial asks for {size} px; "
            f"re-run `ablate prepare ... --size {size}` (upsampling would invent detail)"
        )
    ds = ray.data.read_parquet(shard_paths(data_dir, split, verify=verify), columns=["id", "image"])
    return ds.map_batches(DecodeAugment(size, augment), batch_format="numpy", batch_size=16)
