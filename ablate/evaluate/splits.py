"""A prepared dataset's splits as arrays at an image size: what evaluation scores and judges against."""

from __future__ import annotations

import numpy as np


def load_test_split(data_dir: str, size: int, splits: tuple[str, ...] = ("test",)) -> dict:
    """{"ids", "sources", "images" uint8 (N, size, size, 3), "fov" bool (N, size, size), "vessel"
    bool (N, size, size), "labelled" bool (N,)} of the images of `splits`, resized to `size` where
    prepared at another size (evaluate/plan.py says when). `vessel` is the manual vessel mask where
    the source had one (`labelled`), else all False; resized as `ablate prepare` resizes masks
    (area fraction >= 0.5).

    Args:
        data_dir: the prepared dataset (folder or URI).
        size: the image side wanted, in px.
        splits: the splits read, in this order.
    """
    import pyarrow.parquet as pq
    from PIL import Image

    from ablate.data.preprocess import decode_png
    from ablate.data.shards import shard_paths

    rows = [r for split in splits for p in shard_paths(data_dir, split)
            for r in pq.read_table(p, columns=["id", "source", "image", "fov", "vessel"]).to_pylist()]

    def fit(a: np.ndarray, resample) -> np.ndarray:
        return a if a.shape[0] == size else np.asarray(Image.fromarray(a).resize((size, size), resample))

    images = np.stack([fit(decode_png(r["image"]), Image.Resampling.LANCZOS) for r in rows])
    fovs = np.stack([fit(decode_png(r["fov"]), Image.Resampling.NEAREST) > 127 for r in rows])
    vessel = np.stack([fit(decode_png(r["vessel"]), Image.Resampling.BOX) > 127 if r["vessel"] is not None
                       else np.zeros((size, size), bool) for r in rows])
    return {"ids": [r["id"] for r in rows], "sources": [r["source"] for r in rows], "images": images, "fov": fovs,
            "vessel": vessel, "labelled": np.array([r["vessel"] is not None for r in rows], dtype=bool)}
