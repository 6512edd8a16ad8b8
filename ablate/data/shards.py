"""Prepared datasets on disk: Parquet shards per split plus manifest.json.

Layout of a prepared folder:
    manifest.json        counts per split, image size, preprocessing parameters,
                         one entry per shard with its row count and sha256
    train-00000.parquet  ... one or more shards per split
    rejects.csv          file,reason for every input that could not be used

Preparation is deterministic (no timestamps, sorted inputs), so re-running on
the same input finds an identical manifest and rewrites nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ablate import storage
from ablate.data.preprocess import RejectedImage, png_bytes, preprocess
from ablate.data.sources import scan
from ablate.io import atomic_path, sha256_file, write_text_atomic

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
SCHEMA = pa.schema(
    [
        ("id", pa.string()),  # sha256 of the source file's bytes, first 16 hex digits
        ("source", pa.string()),  # file name relative to the prepared SRC folder
        ("split", pa.string()),
        ("image", pa.binary()),  # PNG, RGB uint8, size x size
        ("fov", pa.binary()),  # PNG, 0/255
        ("vessel", pa.binary()),  # PNG, 0/255; null when the dataset has no vessel masks
        ("orig_height", pa.int32()),
        ("orig_width", pa.int32()),
        ("fov_source", pa.string()),  # "mask" or "threshold"
    ]
)


class DatasetError(ValueError):
    """A prepared dataset is missing, incomplete, or does not match its manifest."""


@dataclass(frozen=True)
class PrepareResult:
    out: Path
    counts: dict[str, int]
    rejects: list[tuple[str, str]]
    changed: bool  # False when an identical dataset was already there


def _seeded_split(image_id: str, seed: int, fractions: tuple[float, float]) -> str:
    """train/val/test from a hash of (seed, id): stable under adding or removing files."""
    u = int(hashlib.sha256(f"{seed}:{image_id}".encode()).hexdigest()[:8], 16) / 2**32
    if u < fractions[0]:
        return "train"
    return "val" if u < fractions[0] + fractions[1] else "test"


def prepare(
    src: str | Path,
    out: str | Path,
    size: int = 256,
    seed: int = 0,
    fractions: tuple[float, float] = (0.8, 0.1),
    val_from_train: float = 0.1,
    rows_per_shard: int = 512,
) -> PrepareResult:
    """Preprocess every image under `src` into shards under `out`.

    Where the dataset has its own split we keep it; if it has no val split, a
    seeded `val_from_train` fraction of its train split becomes val. Without a
    split, a seeded `fractions` (train, val) split by content id is used.
    """
    src, out = Path(src), Path(out)
    items = scan(src)
    if not items:
        raise DatasetError(f"{src}: no images found (looked for {', '.join(sorted({'.png', '.jpg', '.tif', '.gif'}))} files in {src} or {src}/images)")
    has_own_split = any(it.split for it in items)
    rows: dict[str, list[dict]] = {s: [] for s in SPLITS}
    rejects: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for it in items:
        rel = str(it.image.relative_to(src))
        try:
            raw = it.image.read_bytes()
        except OSError as e:
            rejects.append((rel, f"cannot read file ({e.strerror or e})"))
            continue
        image_id = hashlib.sha256(raw).hexdigest()[:16]
        if image_id in seen:
            rejects.append((rel, f"duplicate of {seen[image_id]} (same content)"))
            continue
        try:
            p = preprocess(it.image, size, fov=it.fov, vessel=it.vessel)
        except RejectedImage as e:
            rejects.append((rel, str(e)))
            continue
        except OSError as e:
            rejects.append((rel, f"cannot read file ({e.strerror or e})"))
            continue
        seen[image_id] = rel
        if has_own_split:
            if it.split is None:
                rejects.append((rel, "dataset has its own split but this image is in none of it"))
                continue
            split = it.split
            if split == "train" and _seeded_split(image_id, seed, (1 - val_from_train, val_from_train)) == "val":
                split = "val"
        else:
            split = _seeded_split(image_id, seed, fractions)
        rows[split].append(
            {
                "id": image_id,
                "source": rel,
                "split": split,
                "image": png_bytes(p.image),
                "fov": png_bytes(p.fov),
                "vessel": None if p.vessel is None else png_bytes(p.vessel),
                "orig_height": p.original_size[0],
                "orig_width": p.original_size[1],
                "fov_source": p.fov_source,
            }
        )
    counts = {s: len(r) for s, r in rows.items()}
    if sum(counts.values()) == 0:
        reasons = "; ".join(f"{f}: {r}" for f, r in rejects[:5])
        raise DatasetError(f"{src}: no valid fundus photograph among {len(items)} file(s) ({reasons})")

    # Shard bytes in memory first so an unchanged dataset is detected before any write.
    shards: list[tuple[str, str, int, bytes]] = []
    for split in SPLITS:
        split_rows = sorted(rows[split], key=lambda r: r["id"])
        for k in range(0, len(split_rows), rows_per_shard):
            chunk = split_rows[k : k + rows_per_shard]
            buf = io.BytesIO()
            pq.write_table(pa.Table.from_pylist(chunk, schema=SCHEMA), buf, compression="zstd")
            data = buf.getvalue()
            shards.append((f"{split}-{k // rows_per_shard:05d}.parquet", split, len(chunk), data))
    manifest = {
        "format_version": FORMAT_VERSION,
        "source": str(src.resolve()),
        "image_size": size,
        "counts": counts,
        "rejected": len(rejects),
        "preprocessing": {
            "fov": "mask file where present, else red-channel threshold (largest component, holes filled)",
            "crop": "FOV bounding box, zero-padded to a centred square",
            "resize": "Lanczos (image), box filter + 0.5 threshold (masks)",
            "outside_fov": "set to 0",
            "split": "dataset's own" if has_own_split else f"seeded by content id (seed {seed}, fractions {fractions})",
            "val_from_train": val_from_train if has_own_split else None,
            "seed": seed,
        },
        "shards": [
            {"file": name, "split": split, "rows": n, "sha256": hashlib.sha256(data).hexdigest()}
            for name, split, n, data in shards
        ],
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    mpath = out / MANIFEST
    unchanged = mpath.is_file() and mpath.read_text() == text and all(
        (out / s["file"]).is_file() and sha256_file(out / s["file"]) == s["sha256"] for s in manifest["shards"]
    )
    if not unchanged:
        out.mkdir(parents=True, exist_ok=True)
        # Manifest last: a reader never sees a manifest whose shards are not all written.
        mpath.unlink(missing_ok=True)
        for name, _, _, data in shards:
            with atomic_path(out / name) as tmp:
                tmp.write_bytes(data)
        keep = {s["file"] for s in manifest["shards"]}
        for stale in out.glob("*-[0-9][0-9][0-9][0-9][0-9].parquet"):
            if stale.name not in keep:
                stale.unlink()
        write_text_atomic(mpath, text)
    with atomic_path(out / "rejects.csv") as tmp:
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "reason"])
            w.writerows(rejects)
    return PrepareResult(out=out, counts=counts, rejects=rejects, changed=not unchanged)


def read_manifest(data_dir: str | Path) -> dict:
    """`data_dir` is a local folder or a URI (s3://bucket/prefix) holding a prepared dataset."""
    remote = storage.is_uri(data_dir)
    data_dir = storage.normalize(data_dir) if remote else Path(data_dir)
    mpath = storage.join(data_dir, MANIFEST) if remote else data_dir / MANIFEST
    if not storage.is_file(mpath):
        how = (f"prepare it locally (`ablate prepare SRC --out DIR`) and upload DIR to {data_dir}" if remote
               else f"run `ablate prepare SRC --out {data_dir}` first")
        raise DatasetError(f"{data_dir}: not a prepared dataset (no {MANIFEST}); {how}")
    try:
        manifest = json.loads(storage.read_text(mpath))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{mpath}: corrupt manifest ({e})") from None
    from ablate.schemas import MANIFEST as SHAPE
    from ablate.schemas import problem

    if isinstance(manifest, dict) and "format_version" in manifest and manifest["format_version"] != FORMAT_VERSION:
        raise DatasetError(f"{mpath}: format_version {manifest['format_version']!r} != {FORMAT_VERSION}; re-run prepare")
    wrong = problem(manifest, SHAPE)
    if wrong:
        raise DatasetError(f"{mpath}: {wrong}; not a manifest `ablate prepare` wrote (re-run prepare)")
    # The counts say which splits hold images, the shards where they are: they must agree.
    for split in set(manifest["counts"]) | {s["split"] for s in manifest["shards"]}:
        rows = sum(s["rows"] for s in manifest["shards"] if s["split"] == split)
        if manifest["counts"].get(split, 0) != rows:
            raise DatasetError(f"{mpath}: counts.{split} is {manifest['counts'].get(split, 0)} but its shards "
                               f"hold {rows} rows; not a manifest `ablate prepare` wrote (re-run prepare)")
    return manifest


def shard_paths(data_dir: str | Path, split: str, verify: bool = True) -> list[str]:
    """Paths (or URIs, for a dataset on object storage) of a split's shards, checked
    against the manifest's checksums."""
    remote = storage.is_uri(data_dir)
    data_dir = storage.normalize(data_dir) if remote else Path(data_dir)
    manifest = read_manifest(data_dir)
    paths = []
    for s in manifest["shards"]:
        if s["split"] != split:
            continue
        p = storage.join(data_dir, s["file"]) if remote else data_dir / s["file"]
        if not storage.is_file(p):
            raise DatasetError(f"{p}: shard listed in {MANIFEST} is missing")
        if verify and storage.sha256(p) != s["sha256"]:
            raise DatasetError(f"{p}: checksum differs from {MANIFEST} (truncated or altered); re-run prepare")
        paths.append(str(p))
    if not paths:
        raise DatasetError(f"{data_dir}: split {split!r} is empty or not in {MANIFEST} (counts: {manifest['counts']})")
    return paths
