"""What the benchmarks share: DRIVE (read in place beside the project, never copied
into it) prepared once per work folder at the size a benchmark needs."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

DRIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "drive"


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--drive", default=str(DRIVE), help="the DRIVE dataset folder")
    ap.add_argument("--work", default=None, help="folder for prepared data and experiments (default: a temp dir)")


def prepared(args: argparse.Namespace, size: int, prefix: str) -> tuple[Path, Path]:
    """(work folder, DRIVE prepared at `size` px inside it), preparing on first use."""
    from ablate.data.shards import prepare

    work = Path(args.work or tempfile.mkdtemp(prefix=f"ablate-{prefix}-"))
    data = work / f"drive{size}"
    if not (data / "manifest.json").is_file():
        prepare(args.drive, data, size=size)
    return work, data
