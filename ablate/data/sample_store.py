"""A trial's synthetic images on disk: `EXP/samples/<trial>/chunk-NNNNN.parquet`.

The prior stage (and `ablate sample` later) writes samples in chunks, one Parquet file per
chunk, each written atomically and never replaced: a chunk file either holds all its rows or
does not exist, so an interrupted draw resumes at the first missing chunk and nothing already
drawn is lost. A chunk's random seed is derived from the trial's prior seed and the chunk's
number (`chunk_seed`), so chunk k holds the same images whether the trial drew it or
`ablate sample` did, on whichever node.

Each row: `sample_id` ("c00003-017": chunk 3, row 17), `chunk`, `index` (row in the chunk),
`seed` (the chunk's), `condition` (the label drawn for, as the dataset spells it; null for an
unconditional prior), `top_k`, `temperature`,
`prior_step` (the prior checkpoint's step), `png` (RGB uint8 PNG at the trial's image size).
Evaluation reads them back with `read_samples`.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ablate import storage
from ablate.errors import InvalidInput

CHUNK_FILE = "chunk-{:05d}.parquet"
CHUNK_PATTERN = re.compile(r"chunk-(\d{5})\.parquet")
CONTACT_SHEET = "contact_sheet.png"
PRIOR_DIR = "prior"  # under samples/<trial>/: the code shards and the prior's Train run
COLUMNS = ("sample_id", "chunk", "index", "seed", "condition", "top_k", "temperature", "prior_step", "png")


def chunk_seed(prior_seed: int, chunk: int) -> int:
    """The seed of chunk `chunk` of a prior seeded `prior_seed`: sha256 of both, 63 bits (a
    torch generator's range), so neighbouring chunks are unrelated streams."""
    digest = hashlib.sha256(f"ablate-sample:{int(prior_seed)}:{int(chunk)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def chunk_numbers(folder: str | Path) -> list[int]:
    """The chunk numbers present in a trial's samples folder, sorted ([] when none)."""
    if not storage.is_dir(folder):
        return []
    names = storage.list_files(folder)
    return sorted(int(m.group(1)) for name in names if (m := CHUNK_PATTERN.fullmatch(name)))  # this folder only


def write_chunk(folder: str | Path, chunk: int, images: np.ndarray, *, seed: int, condition: Sequence[str] | None,
                top_k: int | None, temperature: float, prior_step: int) -> str:
    """Write one chunk of samples; returns its path. Refuses to replace an existing chunk.

    Args:
        folder: the trial's samples folder (local or URI).
        chunk: the chunk's number.
        images: uint8 (N, H, W, 3).
        seed: the chunk's seed (`chunk_seed`).
        condition: the label of each row (N strings), or None when the prior is unconditional.
        top_k, temperature: the sampling settings.
        prior_step: the step of the prior checkpoint that drew them.
    """
    from ablate.data.preprocess import png_bytes

    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise InvalidInput(f"samples chunk {chunk}: expected uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if condition is not None and len(condition) != len(images):
        raise InvalidInput(f"samples chunk {chunk}: {len(condition)} labels for {len(images)} images")
    path = storage.join(folder, CHUNK_FILE.format(chunk))
    if storage.is_file(path):
        raise FileExistsError(f"{path}: chunk {chunk} was already drawn; samples are never replaced")
    n = len(images)
    table = pd.DataFrame({
        "sample_id": [f"c{chunk:05d}-{i:03d}" for i in range(n)],
        "chunk": np.full(n, chunk, np.int64),
        "index": np.arange(n, dtype=np.int64),
        "seed": np.full(n, seed, np.int64),
        # null Int64 as before labels were drawn, so an unconditional prior's chunks are unchanged
        "condition": (pd.array([None] * n, dtype="Int64") if condition is None
                      else pd.array([str(c) for c in condition], dtype="string")),
        "top_k": pd.array([top_k] * n, dtype="Int64"),
        "temperature": np.full(n, float(temperature)),
        "prior_step": np.full(n, prior_step, np.int64),
        "png": [png_bytes(im) for im in images],
    })
    storage.write_parquet(table, path)
    return path


@dataclass(frozen=True)
class SampleSet:
    """A trial's samples read back: `images` uint8 (N, H, W, 3) and the rows' other columns."""
    folder: str
    images: np.ndarray
    table: pd.DataFrame  # the rows without the png column

    @property
    def ids(self) -> list[str]:
        return list(self.table["sample_id"])


def read_samples(folder: str | Path, limit: int | None = None) -> SampleSet:
    """Every chunk in `folder`, in chunk order (the first `limit` samples when given).
    InvalidInput naming the folder when it holds none."""
    from ablate.data.preprocess import decode_png

    chunks = chunk_numbers(folder)
    if not chunks:
        raise InvalidInput(f"{folder}: no samples (chunk-NNNNN.parquet); run the grid with a `prior:` block, "
                           "or `ablate sample`")
    frames = []
    total = 0
    for c in chunks:
        frames.append(storage.read_parquet(storage.join(folder, CHUNK_FILE.format(c))))
        total += len(frames[-1])
        if limit is not None and total >= limit:
            break
    table = pd.concat(frames, ignore_index=True)
    if limit is not None:
        table = table.iloc[:limit]
    images = np.stack([decode_png(b)[..., :3] for b in table["png"]])
    return SampleSet(folder=str(folder), images=images, table=table.drop(columns=["png"]))


def contact_sheet(images: np.ndarray, columns: int = 4, gap: int = 2) -> bytes:
    """The first images tiled `columns` wide on a white ground, as PNG bytes."""
    from PIL import Image

    n = len(images)
    if n == 0:
        raise InvalidInput("contact sheet: no images")
    rows = -(-n // columns)
    h, w = images.shape[1:3]
    sheet = np.full((rows * h + (rows - 1) * gap, min(n, columns) * w + (min(n, columns) - 1) * gap, 3), 255,
                    np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, columns)
        sheet[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = im
    buf = io.BytesIO()
    Image.fromarray(sheet).save(buf, format="PNG")
    return buf.getvalue()
