"""Reading back what `prepare` wrote, for the data tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq


def read_rejects(out: Path) -> dict[str, str]:
    """rejects.csv of a prepared folder as {file: reason}.

    Args:
        out: the prepared folder.
    """
    with (out / "rejects.csv").open() as f:
        return {row["file"]: row["reason"] for row in csv.DictReader(f)}


def file_bytes_by_name(out: Path) -> dict[str, bytes]:
    """Every file directly in `out` as {name: bytes}, to compare two preparations byte for byte.

    Args:
        out: the prepared folder.
    """
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def id_source_split_rows(out: Path) -> list[dict]:
    """The id, source and split of every row of every shard in `out`, in file order.

    Args:
        out: the prepared folder.
    """
    return [r for p in sorted(out.glob("*.parquet")) for r in pq.read_table(p, columns=["id", "source", "split"]).to_pylist()]


def read_manifest_json(prepared: Path) -> dict:
    """manifest.json of a prepared folder as parsed JSON, unchecked (to damage and write back).

    Args:
        prepared: the prepared folder.
    """
    return json.loads((prepared / "manifest.json").read_text())


def write_manifest_json(prepared: Path, manifest) -> None:
    """`manifest` written as the folder's manifest.json, whatever it holds (damaged on purpose).

    Args:
        prepared: the prepared folder.
        manifest: any JSON-serialisable value.
    """
    (prepared / "manifest.json").write_text(json.dumps(manifest))
