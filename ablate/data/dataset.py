"""What a prepared dataset is made of: file names, the row schema, the error type,
and what `prepare` returns. Shared by the writer (prepare_run, shard_writer) and the
readers (shards.read_manifest / shard_paths)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from ablate.specs import SplitMissing

MANIFEST = "manifest.json"
REJECTS = "rejects.csv"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
SPLIT_MISSING = tuple(s.value for s in SplitMissing)  # what to do with images a present split.csv does not list
SCHEMA = pa.schema(
    [
        ("id", pa.string()),  # sha256 of the source file's bytes, first 16 hex digits
        ("source", pa.string()),  # file name relative to the prepared SRC folder (or the --index file's)
        ("split", pa.string()),
        ("image", pa.binary()),  # PNG, RGB uint8, size x size
        ("fov", pa.binary()),  # PNG, 0/255
        ("vessel", pa.binary()),  # PNG, 0/255; null when the dataset has no vessel masks
        ("orig_height", pa.int32()),
        ("orig_width", pa.int32()),
        ("fov_source", pa.string()),  # "mask" or "threshold"
    ]
)
# Everything a prepared folder may hold (with atomic_path's temporary files of them).
OWNED = re.compile(r"\.?(manifest\.json|rejects\.csv|[a-z]+-\d{5}\.parquet)(\.[0-9a-z_]+\.tmp)?")


class DatasetError(ValueError):
    """A prepared dataset is missing, incomplete, or does not match its manifest."""


@dataclass(frozen=True)
class PrepareResult:
    out: Path | str  # a local folder, or the URI written to
    counts: dict[str, int]
    rejects: list[tuple[str, str]]
    changed: bool  # False when an identical dataset was already there
    notes: list[str] = field(default_factory=list)  # lines for the user (recovery, unlisted images)
    resumed: int = 0  # files whose result an interrupted earlier run had already computed (checksum-verified)
    processed: int = 0  # files read and preprocessed by this run
    seconds: float = 0.0  # wall time of the read + preprocess stage
