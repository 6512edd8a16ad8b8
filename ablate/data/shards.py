"""Prepared datasets on disk: Parquet shards per split plus manifest.json.

Layout of a prepared folder:
    manifest.json        counts per split, image size, preprocessing parameters,
                         one entry per shard with its row count and sha256
    train-00000.parquet  ... one or more shards per split
    rejects.csv          file,reason for every input that could not be used

Preparation is deterministic (no timestamps, sorted inputs), so re-running on
the same input finds an identical manifest and rewrites nothing. A changed
dataset replaces the folder whole (ablate/data/swap.py): disk full or a kill
leaves the previous dataset as it was.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ablate import storage
from ablate.data import swap
from ablate.data.guard import DEFAULT_MAX_PIXELS, byte_cap, check_max_pixels, read_once
from ablate.data.preprocess import RejectedImage, png_bytes, preprocess
from ablate.data.sources import SourceItem, scan
from ablate.io import sha256_file, write_text_atomic
from ablate.runtime.progress import tracked

MANIFEST = "manifest.json"
REJECTS = "rejects.csv"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
SPLIT_MISSING = ("skip", "train")  # what to do with images a present split.csv does not list
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
# Everything a prepared folder may hold (with atomic_path's temporary files of them).
_OWNED = re.compile(r"\.?(manifest\.json|rejects\.csv|[a-z]+-\d{5}\.parquet)(\.[0-9a-z_]+\.tmp)?")


class DatasetError(ValueError):
    """A prepared dataset is missing, incomplete, or does not match its manifest."""


@dataclass(frozen=True)
class PrepareResult:
    out: Path
    counts: dict[str, int]
    rejects: list[tuple[str, str]]
    changed: bool  # False when an identical dataset was already there
    notes: list[str] = field(default_factory=list)  # lines for the user (recovery, unlisted images)


def _seeded_split(image_id: str, seed: int, fractions: tuple[float, float]) -> str:
    """train/val/test from a hash of (seed, id): stable under adding or removing files."""
    u = int(hashlib.sha256(f"{seed}:{image_id}".encode()).hexdigest()[:8], 16) / 2**32
    if u < fractions[0]:
        return "train"
    return "val" if u < fractions[0] + fractions[1] else "test"


def _unlisted_note(items: list[SourceItem], split_missing: str) -> list[str]:
    """Images a present split.csv does not name: counted per split, never silent."""
    unlisted = [it.image.name for it in items if it.unlisted]
    if not unlisted:
        return []
    listed = {s: sum(it.split == s for it in items) for s in SPLITS}
    what = ("put in train" if split_missing == "train" else "skipped (listed in rejects.csv)")
    return [f"split.csv does not list {len(unlisted)} of {len(items)} image(s) (it lists "
            + ", ".join(f"{s} {n}" for s, n in listed.items())
            + f"): {', '.join(unlisted[:5])}{' ...' if len(unlisted) > 5 else ''}; {what} "
            f"(--split-missing {split_missing})"]


def prepare(
    src: str | Path,
    out: str | Path,
    size: int = 256,
    seed: int = 0,
    fractions: tuple[float, float] = (0.8, 0.1),
    val_from_train: float = 0.1,
    rows_per_shard: int = 512,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    split_missing: str = "skip",
) -> PrepareResult:
    """Preprocess every image under `src` into shards under `out`.

    Where the dataset has its own split we keep it; if it has no val split, a
    seeded `val_from_train` fraction of its train split becomes val. Without a
    split, a seeded `fractions` (train, val) split by content id is used.

    Args:
        max_pixels: images whose header claims more pixels are rejected undecoded;
            files larger than guard.byte_cap(max_pixels) bytes are rejected unread.
        split_missing: images a present split.csv does not list: "skip" (rejected,
            the split stays exactly as written) or "train".
    """
    src, out = Path(src), Path(out)
    if split_missing not in SPLIT_MISSING:
        raise DatasetError(f"--split-missing {split_missing!r}: expected one of {', '.join(SPLIT_MISSING)}")
    try:
        check_max_pixels(max_pixels)
        items = scan(src)
    except ValueError as e:  # bad cap or split.csv: the message names the file and line
        raise DatasetError(str(e)) from None
    if not items:
        raise DatasetError(f"{src}: no images found (looked for {', '.join(sorted({'.png', '.jpg', '.tif', '.gif'}))} files in {src} or {src}/images)")
    has_own_split = any(it.split for it in items)
    rows: dict[str, list[dict]] = {s: [] for s in SPLITS}
    rejects: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    max_bytes = byte_cap(max_pixels)
    for it in tracked(items, "prepare", "files"):
        rel = str(it.image.relative_to(src))
        if it.unlisted and split_missing == "skip":
            rejects.append((rel, "not listed in split.csv (--split-missing skip)"))
            continue
        try:
            # Read once: the same bytes give the content id and the decoded image.
            raw = read_once(it.image, max_bytes)
            image_id = hashlib.sha256(raw).hexdigest()[:16]
            if image_id in seen:
                rejects.append((rel, f"duplicate of {seen[image_id]} (same content)"))
                continue
            p = preprocess(raw, size, fov=it.fov, vessel=it.vessel, max_pixels=max_pixels)
        except RejectedImage as e:
            rejects.append((rel, str(e)))
            continue
        finally:
            raw = None  # at most one file's bytes held at a time
        seen[image_id] = rel
        if it.unlisted:
            split = "train"
        elif has_own_split:
            if it.split is None:
                rejects.append((rel, "dataset has its own split but this image is in none of it"))
                continue
            split = it.split
        else:
            split = _seeded_split(image_id, seed, fractions)
        if has_own_split and split == "train" and _seeded_split(image_id, seed, (1 - val_from_train, val_from_train)) == "val":
            split = "val"
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
    own_csv = any(it.unlisted for it in items) or (has_own_split and (src / "split.csv").is_file())
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
            "split_missing": split_missing if own_csv else None,
            "val_from_train": val_from_train if has_own_split else None,
            "seed": seed,
        },
        "shards": [
            {"file": name, "split": split, "rows": n, "sha256": hashlib.sha256(data).hexdigest()}
            for name, split, n, data in shards
        ],
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    rejects_csv = io.StringIO(newline="")
    w = csv.writer(rejects_csv)
    w.writerow(["file", "reason"])
    w.writerows(rejects)
    changed, notes = _write(out, text, [(name, data) for name, _, _, data in shards], rejects_csv.getvalue())
    return PrepareResult(out=out, counts=counts, rejects=rejects, changed=changed,
                         notes=_unlisted_note(items, split_missing) + notes)


def _write(out: Path, manifest: str, shards: list[tuple[str, bytes]], rejects: str) -> tuple[bool, list[str]]:
    """Write the dataset into `out` unless an identical one is there. Returns (written?,
    lines for the user about leftovers recovered or removed)."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out}: exists and is not a folder")
    shown, out = out, out.resolve()  # a symlinked --out: the folder it names is replaced, the link kept
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        notes = swap.recover(out)
    except OSError as e:
        raise DatasetError(f"cannot clean up after an interrupted prepare ({e.filename}: {e.strerror or e}); "
                           f"fix or remove it by hand, then re-run") from None
    mpath = out / MANIFEST
    unchanged = mpath.is_file() and mpath.read_text() == manifest and all(
        (out / s["file"]).is_file() and sha256_file(out / s["file"]) == s["sha256"] for s in json.loads(manifest)["shards"]
    )
    if unchanged:
        if not (out / REJECTS).is_file() or (out / REJECTS).read_text() != rejects:
            write_text_atomic(out / REJECTS, rejects)
        return False, notes
    foreign = swap.foreign_entries(out, lambda name: _OWNED.fullmatch(name) is not None)
    if foreign:
        raise DatasetError(f"--out {shown}: holds {len(foreign)} "
                           f"{'entry that is' if len(foreign) == 1 else 'entries that are'} not part of a prepared dataset "
                           f"({', '.join(foreign[:5])}); prepare replaces the whole folder, "
                           "so give it a folder of its own")
    had = mpath.is_file()
    # Manifest last: a folder holding a manifest holds every shard it names.
    files = shards + [(REJECTS, rejects.encode()), (MANIFEST, manifest.encode())]
    try:
        return True, notes + swap.replace_folder(out, files)
    except OSError as e:
        kept = f"the previous dataset in {shown} is unchanged" if had else f"nothing was written to {shown}"
        if e.errno == errno.ENOSPC:
            raise DatasetError(f"disk full while writing {e.filename or 'the new dataset'}; {kept}") from None
        raise DatasetError(f"cannot write {e.filename or 'the new dataset'} ({e.strerror or e}); {kept}") from None


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
