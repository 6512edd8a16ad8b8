"""From per-file results to the dataset on disk: splits, duplicates, shard boundaries,
manifest, and the write itself (a local folder swapped in whole, or a URI prefix).

Which shard a row lands in depends only on the input and the seed, never on the
order results arrived in: rows are sorted by content id within their split and cut
every `rows_per_shard` rows. The rows themselves stay in the work folder; only their
(id, work key) pairs are held here, and one shard's rows at a time are read back.
The shards are built twice: once to hash them for the manifest (so an unchanged
dataset is recognised before anything is written), once to write them, each build
checked against the first.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ablate import storage
from ablate.data import swap
from ablate.data.dataset import MANIFEST, OWNED, REJECTS, SCHEMA, SOFT_SCHEMA, SPLITS, DatasetError
from ablate.io import sha256_file, write_text_atomic


@dataclass(frozen=True)
class RowRef:
    id: str
    source: str
    key: str  # the work-folder entry holding the row's images
    labels: tuple[str | None, ...] = ()  # the value of each label column (index.py), None where empty
    losses: tuple[float, float] | None = None  # (area, length) the binary vessel reference lost; None: no mask


@dataclass(frozen=True)
class Plan:
    rows: dict[str, list[RowRef]]  # per split, sorted by id
    rejects: list[tuple[str, str]]  # (file, reason), in input order

    @property
    def counts(self) -> dict[str, int]:
        return {s: len(r) for s, r in self.rows.items()}


def _rank(image_id: str, seed: int) -> float:
    return int(hashlib.sha256(f"{seed}:{image_id}".encode()).hexdigest()[:8], 16) / 2**32


def seeded_split(image_id: str, seed: int, fractions: tuple[float, float]) -> str:
    """train/val/test from a hash of (seed, id) alone: stable under adding or removing files,
    its counts only near the fractions (used for val_from_train within a dataset's own train)."""
    u = _rank(image_id, seed)
    if u < fractions[0]:
        return "train"
    return "val" if u < fractions[0] + fractions[1] else "test"


def split_counts(n: int, fractions: tuple[float, float]) -> tuple[int, int, int]:
    """(train, val, test) for `n` images: val and test each the nearest whole number to
    their fraction (halves up: 45 images at 80/10/10 give 35/5/5), but at least one each
    from 3 images on (a dataset with no test image cannot be evaluated), train the rest."""

    def share(f: float) -> int:
        # 1e-9: 1 - 0.8 - 0.1 is 0.0999..., and 5 images must still give half an image, rounded up
        k = int(n * f + 0.5 + 1e-9)
        return max(k, 1) if f > 1e-9 and n >= 3 else k

    n_val = min(share(fractions[1]), n)
    n_test = min(share(1 - fractions[0] - fractions[1]), n - n_val)
    return n - n_val - n_test, n_val, n_test


def exact_split(ids: list[str], seed: int, fractions: tuple[float, float]) -> dict[str, str]:
    """id -> split with exactly split_counts' numbers (issue 25: 45 images got 38/4/3 from
    a per-image hash). The rule: images ordered by the hash of (seed, id); the highest
    n_test are test, the next n_val val, the rest train. An image's place in that order
    never depends on the other images, so adding images moves an existing one only across
    a boundary the new images or the new counts shift: test -> val -> train as images rank
    above it, train -> val -> test as the counts grow; never more than that."""
    order = sorted(ids, key=lambda i: (-_rank(i, seed), i))
    _, n_val, n_test = split_counts(len(order), fractions)
    return {i: ("test" if k < n_test else "val" if k < n_test + n_val else "train") for k, i in enumerate(order)}


def plan(entries: list[tuple[str, str | None, bool, dict | None, tuple[str | None, ...]]], *, has_own_split: bool,
         seed: int, fractions: tuple[float, float], val_from_train: float) -> Plan:
    """`entries`, in input order: (source name, the dataset's own split, unlisted?, result, label
    values) where result is {"id", "reject", "key", "pixels"} or None for a file skipped unread
    (unlisted, --split-missing skip). The first file of a content (its preprocessed pixels; unreadable
    files: their bytes) is kept, later ones are duplicates, rejected naming the kept file: one
    photograph is never in two splits."""
    rows: dict[str, list[RowRef]] = {s: [] for s in SPLITS}
    rejects: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    seeded: list[RowRef] = []  # no split of the dataset's own: split once all are known
    for rel, own, unlisted, res, labels in entries:
        if res is None:
            rejects.append((rel, "not listed in split.csv (--split-missing skip)"))
            continue
        image_id, same = res["id"], same_key(res)
        if same is not None and same in seen:
            rejects.append((rel, f"duplicate of {seen[same]} (same content)"))
            continue
        if res["reject"] is not None:
            rejects.append((rel, res["reject"]))
            continue
        assert same is not None  # an accepted file has its pixels' id (prepare_tasks.process)
        seen[same] = rel
        if unlisted:
            split = "train"
        elif has_own_split:
            if own is None:
                rejects.append((rel, "dataset has its own split but this image is in none of it"))
                continue
            split = own
        else:
            seeded.append(RowRef(image_id, rel, res["key"], labels, res.get("losses")))
            continue
        if has_own_split and split == "train" and seeded_split(image_id, seed, (1 - val_from_train, val_from_train)) == "val":
            split = "val"
        rows[split].append(RowRef(image_id, rel, res["key"], labels, res.get("losses")))
    chosen = exact_split([r.id for r in seeded], seed, fractions)
    for r in seeded:
        rows[chosen[r.id]].append(r)
    for split in SPLITS:
        rows[split].sort(key=lambda r: r.id)
    return Plan(rows, rejects)


def same_key(res: dict) -> str | None:
    """What makes two files one image: the preprocessed pixels where decoded, else the bytes."""
    return res.get("pixels") or res["id"]


def shard_list(p: Plan, rows_per_shard: int) -> list[tuple[str, str, list[RowRef]]]:
    out = []
    for split in SPLITS:
        refs = p.rows[split]
        for k in range(0, len(refs), rows_per_shard):
            out.append((f"{split}-{k // rows_per_shard:05d}.parquet", split, refs[k : k + rows_per_shard]))
    return out


def label_summary(p: Plan, columns: list[str]) -> dict[str, dict]:
    """The manifest's `labels`: per label column its sorted values, and per split how many
    kept images carry each value and how many carry none."""
    out = {}
    for k, name in enumerate(columns):
        counts: dict[str, dict[str, int]] = {}
        missing: dict[str, int] = {}
        for split, refs in p.rows.items():
            counts[split], missing[split] = {}, 0
            for r in refs:
                value = r.labels[k]
                if value is None:
                    missing[split] += 1
                else:
                    counts[split][value] = counts[split].get(value, 0) + 1
        values = sorted({v for by_value in counts.values() for v in by_value})
        out[name] = {"values": values, "counts": counts, "missing": missing}
    return out


def has_masks(p: Plan) -> bool:
    """Whether any kept image has a vessel mask: then the shards carry the soft reference columns."""
    return any(r.losses is not None for refs in p.rows.values() for r in refs)


def reference_losses(p: Plan) -> dict[str, list[tuple[float, float]]]:
    """Per split, (area, length) lost of each kept image that has a vessel mask."""
    return {split: [r.losses for r in refs if r.losses is not None] for split, refs in p.rows.items()}


def shard_schema(label_columns: Sequence[str], soft: bool = False) -> pa.Schema:
    """The shards' columns: SCHEMA, then SOFT_SCHEMA's where the dataset has vessel masks
    (`soft`), then one string column per label column."""
    schema = SCHEMA
    if soft:
        for f in SOFT_SCHEMA:
            schema = schema.append(f)
    for name in label_columns:
        schema = schema.append(pa.field(name, pa.string()))
    return schema


def shard_bytes(split: str, refs: list[RowRef], load: Callable[[str], dict | None],
                label_columns: Sequence[str] = (), soft: bool = False) -> bytes:
    rows = []
    for r in refs:
        rec = load(r.key)
        if rec is None:
            raise DatasetError(f"the work folder's result for {r.source} disappeared or was damaged while the "
                               "dataset was being written; re-run prepare")
        rows.append({"id": r.id, "source": r.source, "split": split, "image": rec["image"], "fov": rec["fov"],
                     "vessel": rec["vessel"], "orig_height": rec["orig_height"], "orig_width": rec["orig_width"],
                     "fov_source": rec["fov_source"], **dict(zip(label_columns, r.labels))})
        if soft:
            rows[-1].update({name: rec.get(name) for name in SOFT_SCHEMA.names})
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=shard_schema(label_columns, soft)), buf, compression="zstd")
    return buf.getvalue()


def hashed_shards(shards, load, label_columns: Sequence[str], soft: bool = False) -> list[dict]:
    """The manifest's shard entries: one shard's rows in memory at a time."""
    return [{"file": name, "split": split, "rows": len(refs),
             "sha256": hashlib.sha256(shard_bytes(split, refs, load, label_columns, soft)).hexdigest()}
            for name, split, refs in shards]


def rebuilt(shards, load, entries: list[dict], label_columns: Sequence[str],
            soft: bool = False) -> Iterator[tuple[str, bytes]]:
    for (name, split, refs), entry in zip(shards, entries):
        data = shard_bytes(split, refs, load, label_columns, soft)
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise DatasetError(f"{name} came out different when built a second time from the same rows; "
                               "nothing was replaced (please report this)")
        yield name, data


def rejects_text(rejects: list[tuple[str, str]]) -> str:
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["file", "reason"])
    w.writerows((storage.csv_cell(f), storage.csv_cell(why)) for f, why in rejects)
    return buf.getvalue()


def recover_local(out: Path) -> list[str]:
    """swap.recover for a local --out (resolved), its failure as a DatasetError."""
    try:
        return swap.recover(out.resolve())
    except OSError as e:
        raise DatasetError(f"cannot clean up after an interrupted prepare ({e.filename}: {e.strerror or e}); "
                           f"fix or remove it by hand, then re-run") from None


def write_local(out: Path, manifest: str, shards: Iterator[tuple[str, bytes]], rejects: str) -> tuple[bool, list[str]]:
    """Write the dataset into `out` unless an identical one is there. Returns (written?,
    lines for the user about leftovers recovered or removed)."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out}: exists and is not a folder")
    shown, out = out, out.resolve()  # a symlinked --out: the folder it names is replaced, the link kept
    out.parent.mkdir(parents=True, exist_ok=True)
    notes = recover_local(out)
    mpath = out / MANIFEST
    unchanged = mpath.is_file() and mpath.read_text() == manifest and all(
        (out / s["file"]).is_file() and sha256_file(out / s["file"]) == s["sha256"] for s in json.loads(manifest)["shards"]
    )
    if unchanged:
        if not (out / REJECTS).is_file() or (out / REJECTS).read_text() != rejects:
            write_text_atomic(out / REJECTS, rejects)
        return False, notes
    foreign = swap.foreign_entries(out, lambda name: OWNED.fullmatch(name) is not None)
    if foreign:
        raise DatasetError(foreign_message(shown, foreign))
    had = mpath.is_file()
    # Manifest last: a folder holding a manifest holds every shard it names.
    files = itertools.chain(shards, [(REJECTS, rejects.encode()), (MANIFEST, manifest.encode())])
    try:
        return True, notes + swap.replace_folder(out, files)
    except OSError as e:
        kept = f"the previous dataset in {shown} is unchanged" if had else f"nothing was written to {shown}"
        if e.errno == errno.ENOSPC:
            raise DatasetError(f"disk full while writing {e.filename or 'the new dataset'}; {kept}") from None
        raise DatasetError(f"cannot write {e.filename or 'the new dataset'} ({e.strerror or e}); {kept}") from None


def foreign_message(shown, foreign: list[str]) -> str:
    return (f"--out {shown}: holds {len(foreign)} "
            f"{'entry that is' if len(foreign) == 1 else 'entries that are'} not part of a prepared dataset "
            f"({', '.join(foreign[:5])}); prepare replaces the whole folder, so give it a folder of its own")


def write_uri(out: str, manifest: str, shards: Iterator[tuple[str, bytes]], rejects: str) -> bool:
    """The same on object storage, where no folder can be swapped: the old manifest is
    deleted first (a reader then finds no dataset rather than a mix), shards are written,
    then rejects.csv and the manifest last; shards the new manifest does not name go after.
    Returns False when an identical dataset was already there (nothing written)."""
    existing = storage.list_files(out)
    mpath = storage.join(out, MANIFEST)
    if MANIFEST in existing and storage.read_text(mpath) == manifest and all(
        s["file"] in existing and storage.sha256(storage.join(out, s["file"])) == s["sha256"]
        for s in json.loads(manifest)["shards"]
    ):
        if REJECTS not in existing or storage.read_text(storage.join(out, REJECTS)) != rejects:
            storage.write_text(storage.join(out, REJECTS), rejects)
        return False
    foreign = sorted(n for n in existing if OWNED.fullmatch(n) is None)
    if foreign:
        raise DatasetError(foreign_message(out, foreign))
    if MANIFEST in existing:
        _delete(mpath)
    written = set()
    for name, data in shards:
        storage.write_bytes(storage.join(out, name), data)
        written.add(name)
    storage.write_text(storage.join(out, REJECTS), rejects)
    storage.write_text(mpath, manifest)
    for stale in sorted(set(existing) - written - {MANIFEST, REJECTS}):
        _delete(storage.join(out, stale))
    return True


def _delete(uri: str) -> None:
    fs, path = storage.resolve(uri)
    try:
        fs.delete_file(path)
    except OSError as e:
        raise storage.StorageError(f"{uri}: cannot delete ({e})") from None
