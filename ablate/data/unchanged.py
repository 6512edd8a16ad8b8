"""Skip a prepare whose input has not changed since it wrote its output.

Re-running `ablate prepare` on unchanged input must rewrite nothing, and at archive scale
it must not re-read anything either: 90,000 photographs take hours to decode again only to
find the same bytes. After each successful prepare we record, per output location, a
fingerprint of everything that decides the dataset without reading a pixel (every file's
path, size and modification time, the split each was given, the options, the preprocessing
code's version: the work folder's keys) and the sha256 of the manifest written. A re-run
with the same fingerprint, whose output still holds that manifest and whose shards still
match their checksums, is done without reading a source file.

The records live in $ABLATE_CACHE/prepare-done/ (not in the dataset: the dataset's bytes
depend on the photographs only, not on where or when they were copied).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

from ablate import storage
from ablate.cache import cache_root
from ablate.data.dataset import MANIFEST, REJECTS, Manifest
from ablate.io import write_bytes_atomic
from ablate.storage import csv_uncell


def record_path(out: str) -> Path:
    root = cache_root()
    return root / "prepare-done" / f"{hashlib.sha256(out.encode()).hexdigest()[:16]}.json"


def fingerprint(settings: str, keys: list[str], items, options: dict) -> str:
    """The input's fingerprint.

    Args:
        settings: the work cache's settings string (size, pixel cap, code version).
        keys: the work cache's key of each item (path, size, mtime of image and masks); a file
            stat() cannot describe (dangling link, not a regular file) as "unkeyed:<path>",
            so it appearing or changing kind changes the fingerprint.
        items: the SourceItems, for the split each was given, whether split.csv lists it and
            its labels (an index's label columns; an input without any adds nothing).
        options: the split and shard options of this run.
    """
    splits = [[it.split, bool(it.unlisted), *([[list(kv) for kv in it.labels]] if it.labels else [])] for it in items]
    text = json.dumps([settings, keys, splits, options], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def record(out: str, fp: str) -> list[str]:
    """Note that `out` now holds the dataset of input `fp`. A failed write costs only speed
    (the next unchanged run reads its files again), so it is a line for the user, not an error."""
    try:
        manifest = storage.read_bytes(storage.join(out, MANIFEST))
        body = {"out": out, "fingerprint": fp, "manifest_sha256": hashlib.sha256(manifest).hexdigest()}
        write_bytes_atomic(record_path(out), (json.dumps(body, indent=2) + "\n").encode())
    except OSError as e:
        return [(f"could not record the input's fingerprint in {record_path(out)} ({e.strerror or e}): "
                 "a re-run on this unchanged input will read every file again")]
    return []


def unchanged(out: str, fp: str) -> tuple[Manifest, list[tuple[str, str]]] | None:
    """(manifest, rejects) when `out` holds the verified dataset of input `fp`; else None.

    A missing or altered manifest, or any shard whose sha256 differs from the manifest's,
    means the output is not what was recorded: the caller prepares as usual."""
    try:
        rec = json.loads(record_path(out).read_text())
        if rec.get("fingerprint") != fp or rec.get("out") != out:
            return None
        raw = storage.read_bytes(storage.join(out, MANIFEST))
        if hashlib.sha256(raw).hexdigest() != rec.get("manifest_sha256"):
            return None
        manifest = Manifest.model_validate_json(raw)  # pydantic's ValidationError is a ValueError
        for shard in manifest.shards:
            if storage.sha256(storage.join(out, shard.file)) != shard.sha256:
                return None
        rows = list(csv.reader(io.StringIO(storage.read_text(storage.join(out, REJECTS)))))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return manifest, [(csv_uncell(r[0]), csv_uncell(r[1])) for r in rows[1:] if len(r) >= 2]
