"""`--index FILE`: the images to prepare listed in a CSV or Parquet file instead of
found by scanning a folder (a biobank's export, a hospital's archive listing).

Columns: `path` (required; relative to the index file's folder, or absolute), and
optionally `split` (train/val/test, as split.csv spells them; empty: not listed),
`fov` and `vessel` (mask files, same rules as path). Read strictly, like split.csv:
a missing column, an empty path, a path listed twice or an unknown split name is
refused naming the line. Files that do not exist are listed, and reach rejects.csv
with the reason, as a folder's unreadable entries do.

Every other column is a label (a grade, a device, a k-means cluster): carried as text into
the shards beside each image (null where the cell is empty) and listed in manifest.json
with its values, so a prior can be conditioned on it (`prior: {condition: COLUMN}`). A
label named like a column of the shards themselves (id, source, image, vessel_soft, ...) is refused.
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path

from ablate.data.dataset import SCHEMA, SOFT_SCHEMA
from ablate.data.sources import SPLIT_NAMES, SourceItem, csv_text

COLUMNS = ("path", "split", "fov", "vessel")


def _rows(index: Path) -> tuple[list[str], list[dict]]:
    """(column names, rows as {column: str or None}); line numbers follow the file
    (CSV: header on line 1; Parquet: row k on 'line' k + 2, as if it were a CSV)."""
    if not index.is_file():
        raise ValueError(f"--index {index}: not a readable file")
    if index.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(index).names
            table = pq.read_table(index)
        except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError
            raise ValueError(f"--index {index}: not a readable Parquet file ({e})") from None
        rows = [{k: (None if v is None else str(v)) for k, v in r.items()} for r in table.to_pylist()]
        return names, rows
    with io.StringIO(csv_text(index, f"--index {index}"), newline="") as f:
        reader = csv.DictReader(f)
        names = list(reader.fieldnames or [])
        return names, [dict(r) for r in reader]


def label_columns(index: Path, names: list[str]) -> list[str]:
    """The index's label columns (every column but path, split, fov, vessel), in file order;
    ValueError naming the file and the column for one the shards could not hold."""
    labels = [n for n in names if n not in COLUMNS]
    for name in labels:
        if not name.strip():
            raise ValueError(f"--index {index}: a column has no name; name it (it is carried as a label) or remove it")
        own = SCHEMA.names + SOFT_SCHEMA.names
        if name in own:
            raise ValueError(f"--index {index}: column {name!r} clashes with the prepared shards' own {name!r} "
                             f"column ({', '.join(own)}); rename it to carry it as a label")
    return labels


def read_index(index: Path) -> list[SourceItem]:
    names, rows = _rows(index)
    if "path" not in names:
        raise ValueError(f"--index {index}: expected a 'path' column (and optionally split, fov, vessel), got {names}")
    labels = label_columns(index, names)
    base = index.resolve().parent
    has_split = "split" in names
    items: list[SourceItem] = []
    line_of: dict[str, int] = {}  # the image's path -> the index line that lists it
    for k, row in enumerate(rows):
        line = k + 2
        written = (row.get("path") or "").strip()
        if not written:
            raise ValueError(f"--index {index} line {line}: empty path")
        image = base / written  # an absolute path stays absolute
        if str(image) in line_of:
            raise ValueError(f"--index {index} line {line}: {written!r} already listed on line {line_of[str(image)]}; "
                             "keep one row per image")
        line_of[str(image)] = line
        split = None
        raw_split = (row.get("split") or "").strip() if has_split else ""
        if raw_split:
            split = SPLIT_NAMES.get(raw_split.lower())
            if split is None:
                raise ValueError(f"--index {index} line {line}: unknown split {raw_split!r} for {written!r} "
                                 f"(expected one of {', '.join(sorted(SPLIT_NAMES))}, or empty)")
        masks = {c: (base / row[c].strip()) if (row.get(c) or "").strip() else None for c in ("fov", "vessel")}
        items.append(SourceItem(image=image, vessel=masks["vessel"], fov=masks["fov"], split=split,
                                unlisted=has_split and split is None,
                                labels=tuple((c, (row.get(c) or "").strip() or None) for c in labels)))
    if not items:
        raise ValueError(f"--index {index}: no rows; list one image per row under a 'path' column")
    if not any(it.split for it in items):  # a split column left empty throughout: no split given
        items = [replace(it, unlisted=False) for it in items]
    return items
