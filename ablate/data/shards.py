"""Prepared datasets on disk: Parquet shards per split plus manifest.json.

Layout of a prepared folder (or URI prefix):
    manifest.json        counts per split, image size, preprocessing parameters,
                         one entry per shard with its row count and sha256,
                         an --index file's label columns with their values (`labels`),
                         and, with vessel masks, how the binary and soft vessel
                         references were made and what the binary lost (`vessel_reference`)
    train-00000.parquet  ... one or more shards per split
    rejects.csv          file,reason for every input that could not be used

Preparation (prepare_run.py) is deterministic (no timestamps, rows sorted by content
id), so re-running on the same input finds an identical manifest and rewrites
nothing. A changed dataset replaces the folder whole (ablate/data/swap.py): disk full
or a kill leaves the previous dataset as it was. This module reads datasets; the
names below are re-exported for the many callers that import them from here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import ValidationError

from ablate import storage
from ablate.data.dataset import (  # noqa: F401  (re-exported)
    FORMAT_VERSION,
    MANIFEST,
    REJECTS,
    SCHEMA,
    SPLIT_MISSING,
    SPLITS,
    DatasetError,
    Manifest,
    PrepareResult,
)
from ablate.data.prepare_run import prepare  # noqa: F401  (re-exported)
from ablate.schemas import first_problem


def load_manifest(data_dir: str | os.PathLike) -> Manifest:
    """The dataset's manifest, validated: DatasetError naming the file and the key otherwise.

    Args:
        data_dir: a local folder or a URI (s3://bucket/prefix) holding a prepared dataset.
    """
    remote = storage.is_uri(data_dir)
    data_dir = storage.normalize(data_dir) if remote else Path(data_dir)
    mpath = storage.join(data_dir, MANIFEST) if remote else Path(data_dir) / MANIFEST
    if not storage.is_file(mpath):
        how = (f"prepare it there (`ablate prepare SRC --out {data_dir}`)" if remote
               else f"run `ablate prepare SRC --out {data_dir}` first")
        raise DatasetError(f"{data_dir}: not a prepared dataset (no {MANIFEST}); {how}")
    try:
        manifest = json.loads(storage.read_text(mpath))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{mpath}: corrupt manifest ({e})") from None
    # Another format version is said as such, before its shape is judged by this version's model.
    if isinstance(manifest, dict) and "format_version" in manifest and manifest["format_version"] != FORMAT_VERSION:
        raise DatasetError(f"{mpath}: format_version {manifest['format_version']!r} != {FORMAT_VERSION}; re-run prepare")
    try:
        return Manifest.model_validate(manifest)
    except ValidationError as e:
        raise DatasetError(f"{mpath}: {first_problem(e)}; not a manifest `ablate prepare` wrote "
                           "(re-run prepare)") from None


def read_manifest(data_dir: str | Path) -> dict:
    """The dataset's manifest as its JSON object (the keys it holds, validated by load_manifest):
    the view the stages that read a count or the image size use.

    Args:
        data_dir: a local folder or a URI (s3://bucket/prefix) holding a prepared dataset.
    """
    return load_manifest(data_dir).model_dump(mode="json", exclude_unset=True)


def shard_paths(data_dir: str | os.PathLike, split: str, verify: bool = True) -> list[str]:
    """Paths (or URIs, for a dataset on object storage) of a split's shards, checked
    against the manifest's checksums."""
    remote = storage.is_uri(data_dir)
    data_dir = storage.normalize(data_dir) if remote else Path(data_dir)
    manifest = load_manifest(data_dir)
    paths = []
    for s in manifest.shards:
        if s.split != split:
            continue
        p = storage.join(data_dir, s.file) if remote else Path(data_dir) / s.file
        if not storage.is_file(p):
            raise DatasetError(f"{p}: shard listed in {MANIFEST} is missing")
        if verify and storage.sha256(p) != s.sha256:
            raise DatasetError(f"{p}: checksum differs from {MANIFEST} (truncated or altered); re-run prepare")
        paths.append(str(p))
    if not paths:
        raise DatasetError(f"{data_dir}: split {split!r} is empty or not in {MANIFEST} (counts: {manifest.counts})")
    return paths
