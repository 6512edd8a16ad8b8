"""Trim a wheel to what runs here, for a GPU machine that cannot reach PyPI.

The lent GPU machine (issue 30) takes at most 64 MiB of carried files and has no Ray.
Ray's wheel is 79 MB, 31 MB of it the Java jar (`ray/jars/`) and 2.4 MB the dashboard's
web client, neither used by `ablate` (no Java workers; the dashboard is optional and
needs extras the machine lacks anyway). This copies the wheel without them, keeping
every other entry byte for byte with its permissions (`raylet` and `gcs_server` must
stay executable), and drops their lines from RECORD so pip installs it cleanly.

    python benchmarks/gpu_carry.py IN.whl OUT_DIR --drop ray/jars/ --drop ray/dashboard/client/
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path


def trim_wheel(src: Path, out_dir: Path, drop: list[str]) -> Path:
    """Copy `src` into `out_dir` without the entries under the `drop` prefixes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / src.name
    if dest.resolve() == src.resolve():
        raise SystemExit(f"{src}: the trimmed wheel would replace its source; give another OUT_DIR")
    if dest.exists():  # never written over: remove it first if it is one of ours to redo
        raise SystemExit(f"{dest}: exists; remove it, or give another OUT_DIR")
    kept = dropped = 0
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest.with_suffix(".part"), "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if any(info.filename.startswith(p) for p in drop):
                dropped += 1
                continue
            data = zin.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(ln for ln in lines if not any(ln.startswith(p) for p in drop)).encode()
            zout.writestr(info, data)  # the ZipInfo carries the Unix mode bits
            kept += 1
    dest.with_suffix(".part").replace(dest)
    print(f"{dest}: {kept} entries kept, {dropped} dropped, {dest.stat().st_size / 2**20:.1f} MiB")
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheel", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--drop", action="append", required=True, help="an entry prefix to leave out (repeatable)")
    args = ap.parse_args()
    trim_wheel(args.wheel, args.out_dir, args.drop)


if __name__ == "__main__":
    main()
