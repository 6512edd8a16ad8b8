"""Ray Data streams over prepared shards: read Parquet, decode PNG.

Batches leave `map_batches` as uint8 NCHW arrays (4x lighter in the object
store than float); the training loop divides by 255 on its device.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ablate.data.labels import Condition
from ablate.data.preprocess import decode_png
from ablate.data.shards import read_manifest, shard_paths


class Decode:
    """map_batches callable: {"id", "image": PNG bytes} -> {"image": uint8 (N, 3, S, S), "key": int64 (N,)}.

    `key` is the image's content id as an integer, so a worker can tell which
    images it saw (sharding checks) without strings in a tensor batch.
    Augmentation is not done here but on the worker (data/augment.py), so the
    worker can keep decoded images across epochs (data/feed.py).
    With a `condition`, the batch's label column becomes `label`: int64 (N,), each row's class.
    """

    def __init__(self, size: int, condition: Condition | None = None):
        self.size = size
        self.condition = condition

    def _one(self, data: bytes) -> np.ndarray:
        img = decode_png(data)
        if img.shape[0] != self.size:
            img = np.asarray(Image.fromarray(img).resize((self.size, self.size), Image.Resampling.LANCZOS))
        return np.ascontiguousarray(img.transpose(2, 0, 1))

    def __call__(self, batch: dict) -> dict:
        images = (np.stack([self._one(d) for d in batch["image"]]) if len(batch["image"])
                  else np.zeros((0, 3, self.size, self.size), np.uint8))
        keys = np.array([int(str(i)[:15], 16) for i in batch["id"]], dtype=np.int64)
        if self.condition is None:
            return {"image": images, "key": keys}
        return {"image": images, "key": keys, "label": self.condition.classes(batch[self.condition.column])}


def split_dataset(data_dir: str, split: str, size: int, verify: bool = True, condition: Condition | None = None):
    """A Ray Dataset of one split, decoded at `size`.
    `verify=False` skips the shard checksums when the caller has just checked them.
    `condition`: each row's class of that label column too (Decode)."""
    import ray.data

    manifest = read_manifest(data_dir)
    if size > manifest["image_size"]:
        raise ValueError(
            f"{data_dir}: prepared at {manifest['image_size']} px, trial asks for {size} px; "
            f"re-run `ablate prepare ... --size {size}` (upsampling would invent detail)"
        )
    columns = ["id", "image"] + ([condition.column] if condition is not None else [])
    ds = ray.data.read_parquet(shard_paths(data_dir, split, verify=verify), columns=columns)
    return ds.map_batches(Decode(size, condition), batch_format="numpy", batch_size=16)
