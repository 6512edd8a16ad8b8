"""The images of a prepared split that have a manual vessel mask (DRIVE-like data): what a
segmenter is trained, thresholded and judged on."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelledSplit:
    """The images of a prepared split that have a manual vessel mask, and the ones skipped."""
    images: np.ndarray  # uint8 (N, S, S, 3)
    fov: np.ndarray  # bool (N, S, S)
    vessel: np.ndarray  # bool (N, S, S)
    sources: list[str]
    ids: list[str]
    skipped: list[str]  # sources of the split's images without a vessel mask


def _rows(data_dir: str | os.PathLike, split: str) -> list[dict]:
    import pyarrow.parquet as pq

    from ablate.data.shards import shard_paths

    rows: list[dict] = []
    for p in shard_paths(data_dir, split):
        rows += pq.read_table(p, columns=["id", "source", "image", "fov", "vessel"]).to_pylist()
    return rows


def _stack(rows: list[dict], column: str) -> np.ndarray:
    from ablate.data.preprocess import decode_png

    decoded = np.stack([decode_png(r[column]) for r in rows])
    return decoded if column == "image" else decoded > 127


def load_labelled(data_dir: str | os.PathLike, split: str = "test") -> LabelledSplit:
    """The split's images with vessel masks; those without are named in `skipped`. None
    with a mask is an error (nothing to score)."""
    from ablate.data.shards import DatasetError

    rows = _rows(data_dir, split)
    skipped = [r["source"] for r in rows if r["vessel"] is None]
    rows = [r for r in rows if r["vessel"] is not None]
    if not rows:
        raise DatasetError(f"{data_dir}: none of the {len(skipped)} image(s) of the {split} split has a vessel mask; "
                           "segmenters are judged on data with manual masks (DRIVE-like)")
    return LabelledSplit(images=_stack(rows, "image"), fov=_stack(rows, "fov"), vessel=_stack(rows, "vessel"),
                         sources=[r["source"] for r in rows], ids=[r["id"] for r in rows], skipped=skipped)


def load_split(data_dir: str | os.PathLike, split: str = "test") -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(images uint8 (N, S, S, 3), fov bool, vessel bool, sources) of a prepared split whose every
    image has a vessel mask (training and threshold choice need them all)."""
    from ablate.data.shards import DatasetError

    rows = _rows(data_dir, split)
    missing = [r["source"] for r in rows if r["vessel"] is None]
    if missing:
        raise DatasetError(f"{data_dir}: {len(missing)} image(s) of the {split} split have no vessel mask "
                           f"(e.g. {missing[0]}); segmenters are trained and judged on DRIVE-like data with manual masks")
    return _stack(rows, "image"), _stack(rows, "fov"), _stack(rows, "vessel"), [r["source"] for r in rows]
