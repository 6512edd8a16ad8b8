"""`prepare`: a folder (or an index file) of fundus photographs into Parquet shards.

Stages: scan (or --index) -> read + FOV + crop + resize of each file, in parallel
(prepare_tasks: Ray tasks, or this process for small jobs) -> each result saved,
checksummed, in the work folder (work.py) -> rows sorted by content id within their
split and cut into shards (shard_writer) -> the dataset written whole: a local folder
swapped in atomically (swap.py), or a URI prefix with the manifest last.

Memory does not grow with the dataset: the driver holds the file list, one small
record per file, a bounded window of results in flight and one shard's rows while
writing. The output is the same bytes whatever the parallelism (1 CPU, 2, a cluster).
An interrupted prepare keeps its work folder; re-run, it uses the saved results
(checksums verified) and says how many files it skipped. A re-run on unchanged input
reads no file at all (unchanged.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path

from ablate import storage
from ablate.data import safety, soft_reference, swap, unchanged
from ablate.data import shard_writer as sw
from ablate.data.dataset import (
    FORMAT_VERSION,
    MANIFEST,
    OWNED,
    SPLIT_MISSING,
    SPLITS,
    DatasetError,
    Manifest,
    PrepareResult,
    VesselReference,
)
from ablate.data.guard import DEFAULT_MAX_PIXELS, check_max_pixels
from ablate.data.index import read_index
from ablate.data.prepare_tasks import IN_PROCESS_BELOW, Job, Settings, run
from ablate.data.sources import IMAGE_SUFFIXES, SourceItem, safe_name, scan
from ablate.data.work import WorkCache, work_folder


def _unlisted_note(items: list[SourceItem], split_missing: str, listing: str) -> list[str]:
    """Images a present split.csv (or an index's split column) does not name: counted
    per split, never silent."""
    unlisted = [safe_name(it.image.name) for it in items if it.unlisted]
    if not unlisted:
        return []
    listed = {s: sum(it.split == s for it in items) for s in SPLITS}
    what = ("put in train" if split_missing == "train" else "skipped (listed in rejects.csv)")
    return [f"{listing} does not list {len(unlisted)} of {len(items)} image(s) (it lists "
            + ", ".join(f"{s} {n}" for s, n in listed.items())
            + f"): {', '.join(unlisted[:5])}{' ...' if len(unlisted) > 5 else ''}; {what} "
            f"(--split-missing {split_missing})"]


def _inputs(src, index) -> tuple[list[SourceItem], Path, str]:
    """(items in input order, folder their names are relative to, what the manifest names as source)."""
    if (src is None) == (index is None):
        raise DatasetError("give either a source folder or --index FILE (one of them)")
    try:
        if index is not None:
            index = Path(index)
            return read_index(index), index.resolve().parent, str(index.resolve())
        src = Path(src)
        items = scan(src)
    except ValueError as e:  # split.csv or index mistakes: the message names the file and line
        raise DatasetError(str(e)) from None
    if not items:
        raise DatasetError(f"{src}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))} files "
                           f"in {src}, its subfolders, or {src}/images)")
    return items, src, str(src.resolve())


def _rel(image: Path, base: Path) -> str:
    """The name the dataset and rejects.csv give a file (non-UTF-8 bytes escaped: safe_name)."""
    try:
        return safe_name(str(image.relative_to(base)))
    except ValueError:  # an index may name files anywhere
        return safe_name(str(image))


def _check_out(out, remote: bool) -> None:
    """Refuse an unusable --out before hours of preprocessing, not after."""
    if remote:
        names = storage.list_files(out)
        foreign = sorted(n for n in names if OWNED.fullmatch(n) is None)
    else:
        if out.exists() and not out.is_dir():
            raise DatasetError(f"--out {out}: exists and is not a folder")
        foreign = swap.foreign_entries(out.resolve(), lambda n: OWNED.fullmatch(n) is not None)
    if foreign:
        raise DatasetError(sw.foreign_message(out, foreign))


def prepare(
    src: str | Path | None,
    out: str | Path,
    size: int = 256,
    seed: int = 0,
    fractions: tuple[float, float] = (0.8, 0.1),
    val_from_train: float = 0.1,
    rows_per_shard: int = 512,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    split_missing: str = "skip",
    *,
    index: str | Path | None = None,
    cpus: int | None = None,
    address: str | None = None,
    in_process_below: int = IN_PROCESS_BELOW,
    work: str | Path | None = None,
    progress=None,
    allow_missing: bool = False,
    replace: bool = False,
) -> PrepareResult:
    """Preprocess every image under `src` (or listed in `index`) into shards under `out`.

    Where the dataset has its own split we keep it; if it has no val split, a
    seeded `val_from_train` fraction of its train split becomes val. Without a
    split, a seeded `fractions` (train, val) split by content id is used.

    Args:
        out: a local folder, or a URI the storage layer accepts (s3://bucket/prefix).
        max_pixels: images whose header claims more pixels are rejected undecoded;
            files larger than guard.byte_cap(max_pixels) bytes are rejected unread.
        split_missing: images a present split.csv does not list: "skip" (rejected,
            the split stays exactly as written) or "train".
        index: a CSV or Parquet file listing the images (column path; optional split,
            fov, vessel; any other column a label, kept as a string column of the shards and
            listed in the manifest's `labels`) instead of scanning `src`.
        cpus: CPUs to use (default: every core, or the cluster with `address`).
        address: a Ray cluster to join ('auto').
        in_process_below: fewer files to process than this run without Ray.
        work: the work folder (default: <out>.work beside a local out): a path that does not
            exist yet or an empty folder, outside `out` and `src`; only what prepare writes
            there is removed afterwards (work.py).
        allow_missing: go on with an index most of whose files do not exist (refused otherwise).
        replace: replace a dataset in `out` even by one of under half its images (refused otherwise).
        progress: makes the progress display: called as progress(total=, resumed=, counts=)
            it returns an ablate.ui.progress.Progress (e.g. that class with its label,
            unit and stream bound by functools.partial); None shows nothing.
    """
    if split_missing not in SPLIT_MISSING:
        raise DatasetError(f"--split-missing {split_missing!r}: expected one of {', '.join(SPLIT_MISSING)}")
    if cpus is not None and cpus < 1:
        raise DatasetError(f"--cpus {cpus}: must be at least 1")
    try:
        check_max_pixels(max_pixels)
    except ValueError as e:
        raise DatasetError(str(e)) from None
    items, base, source = _inputs(src, index)
    if index is not None:
        safety.check_missing(items, index, allow_missing)
    remote = storage.is_uri(out)
    out = storage.normalize(out) if remote else Path(out)
    _check_out(out, remote)
    work = Path(work) if work else None
    safety.check_work(work or work_folder(str(out), remote), out, remote, None if src is None else Path(src))
    options = {"size": size, "seed": seed, "fractions": fractions, "val_from_train": val_from_train,
               "rows_per_shard": rows_per_shard, "split_missing": split_missing, "replace": replace}
    with safety.output_lock(out, remote):
        return _locked(items, base, source, out, remote, work, options, max_pixels, index is not None,
                       cpus, address, in_process_below, progress)


def _locked(items, base, source, out, remote, work, options, max_pixels, from_index, cpus, address,
            in_process_below, progress) -> PrepareResult:
    """The prepare itself, holding the output's lock."""
    size, split_missing = options["size"], options["split_missing"]
    has_own_split = any(it.split for it in items)
    cache = WorkCache(work or work_folder(str(out), remote), {"size": size, "max_pixels": max_pixels},
                      default=work is None)
    try:
        fp = unchanged.fingerprint(cache.settings, [cache.key(str(it.image), it.fov and str(it.fov),
                                                              it.vessel and str(it.vessel)) or f"unkeyed:{it.image}"
                                                    for it in items],
                                   items, {**options, "replace": None, "source": source})
        # A crash mid-swap may have left the previous dataset aside: put it back before asking.
        recovered = [] if remote or not out.parent.is_dir() else sw.recover_local(out)
        same = unchanged.unchanged(str(out), fp)
    except BaseException:
        cache.close()
        raise
    if same is not None:
        manifest, rejects = same
        notes = [*recovered, (f"input unchanged since this dataset was written ({len(items)} files: same paths, "
                              "sizes and modification times, same options); its shards verified, no file read")]
        _drop(cache, notes)
        return PrepareResult(out=out, counts=dict(manifest.counts), rejects=rejects, changed=False, notes=notes)
    try:
        results, resumed, jobs = _collect(items, cache, split_missing, Settings(size, max_pixels), from_index)
    except BaseException:
        cache.close()  # interrupted: the saved results stay for the next run
        raise
    rels = [_rel(it.image, base) for it in items]
    t0 = time.perf_counter()
    # Rejects so far, for the progress display: unusable files and repeated contents
    # (which of two duplicates is kept is decided later, in input order; the count is the same).
    ids: set[str | None] = set()
    rejected = 0
    for r in results:
        if r is not None:
            rejected += r["reject"] is not None or sw.same_key(r) in ids
            ids.add(sw.same_key(r))
    bar = progress(total=len(jobs) + resumed, resumed=resumed, counts={"rejected": rejected}) \
        if progress is not None else None

    def on_result(i: int, rec: dict) -> None:
        nonlocal rejected
        key = jobs_key[i]
        cache.store(key, rec)
        results[i] = {"id": rec["id"], "reject": rec["reject"], "key": key, "pixels": rec["pixels"],
                      "losses": _losses(rec)}
        rejected += rec["reject"] is not None or sw.same_key(rec) in ids
        ids.add(sw.same_key(rec))
        if bar is not None:
            bar.advance(1, rejected=rejected)

    jobs_key = {j.index: k for j, k in jobs}
    try:
        with bar if bar is not None else contextlib.nullcontext():
            run([j for j, _ in jobs], Settings(size, max_pixels), on_result, cpus=cpus, address=address,
                in_process_below=in_process_below)
    except BaseException:
        cache.close()
        raise
    seconds = time.perf_counter() - t0
    try:
        done = _finish(items, rels, results, cache, out, remote, source, has_own_split, options,
                       PrepareResult(out=out, counts={}, rejects=[], changed=False, resumed=resumed,
                                     processed=len(jobs), seconds=seconds),
                       "the index's split column" if from_index else "split.csv")
        done.notes[:0] = recovered
        done.notes.extend(unchanged.record(str(out), fp))
        return done
    except BaseException:
        cache.close()
        raise


def _collect(items, cache, split_missing, settings, from_index) -> tuple[list[dict | None], int, list[tuple]]:
    """Per item: its saved result (resumed) or a job to run. Returns (results by index,
    how many were resumed, [(job, work key)])."""
    results: list[dict | None] = [None] * len(items)
    jobs, resumed = [], 0
    for i, it in enumerate(items):
        if it.unlisted and split_missing == "skip":
            continue  # never read: rejected as unlisted
        img, fov, ves = str(it.image), it.fov and str(it.fov), it.vessel and str(it.vessel)
        key = cache.key(img, fov, ves)
        rec = cache.load(key) if key is not None else None
        if rec is not None:
            results[i] = {"id": rec["id"], "reject": rec["reject"], "key": key, "pixels": rec.get("pixels"),
                          "losses": _losses(rec)}
            resumed += 1
            continue
        # Files stat() cannot describe get a key of their own for this run only.
        key = key or hashlib.sha256(f"{cache.settings}:unkeyed:{i}:{img}".encode()).hexdigest()[:32]
        jobs.append((Job(i, img, fov, ves), key))
    return results, resumed, jobs


def _losses(rec: dict) -> tuple[float, float] | None:
    """(area, length) the binary vessel reference of a file's result lost; None without a mask."""
    if rec.get("vessel_area_lost") is None:
        return None
    return rec["vessel_area_lost"], rec["vessel_length_lost"]


def _finish(items, rels, results, cache, out, remote, source, has_own_split, o, res, listing):
    label_columns = [name for name, _ in items[0].labels]  # an index's label columns (every item has them all)
    entries = [(rels[i], it.split, it.unlisted, results[i], tuple(v for _, v in it.labels)) for i, it in enumerate(items)]
    # A dataset whose own split names a val set keeps it as written: val_from_train only fills
    # in a val split the dataset lacks (a study's declared validation photographs stay exact).
    own_val = has_own_split and any(it.split == "val" for it in items)
    val_from_train = 0.0 if own_val else o["val_from_train"]
    p = sw.plan(entries, has_own_split=has_own_split, seed=o["seed"], fractions=o["fractions"],
                val_from_train=val_from_train)
    counts = p.counts
    notes = _unlisted_note(items, o["split_missing"], listing)
    own_csv = any(it.unlisted for it in items) or (has_own_split and (Path(source) / "split.csv").is_file()) \
        or (has_own_split and Path(source).is_file())
    if sum(counts.values()) == 0:
        _drop(cache, notes)
        reasons = "; ".join(f"{f}: {r}" for f, r in p.rejects[:5])
        raise DatasetError(f"{source}: no valid fundus photograph among {len(items)} file(s) ({reasons})")
    try:
        safety.check_shrink(_old_manifest(out, remote), counts, out, o["replace"])
    except DatasetError as e:
        cache.close()  # the preprocessed results stay: the re-run with --replace decodes nothing again
        raise DatasetError(f"{e} (the preprocessed results are kept in {cache.folder})") from None
    shards = sw.shard_list(p, o["rows_per_shard"])
    soft = sw.has_masks(p)  # a dataset without vessel masks keeps the columns (and bytes) it had before
    entries_m = sw.hashed_shards(shards, cache.load, label_columns, soft)
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        source=source,
        image_size=o["size"],
        counts=counts,
        rejected=len(p.rejects),
        preprocessing={
            "fov": "mask file where present, else red-channel threshold (largest component, holes filled)",
            "crop": "FOV bounding box, zero-padded to a centred square",
            "resize": "Lanczos (image), box filter + 0.5 threshold (masks)",
            "outside_fov": "set to 0",
            "split": "dataset's own" if has_own_split else f"seeded by content id, exact counts (seed {o['seed']}, fractions {o['fractions']}; "
                                                         "val and test each the nearest whole number, halves up)",
            "split_missing": o["split_missing"] if own_csv else None,
            "val_from_train": val_from_train if has_own_split else None,
            "seed": o["seed"],
        },
        shards=entries_m,
        labels=sw.label_summary(p, label_columns),
        vessel_reference=(VesselReference.model_validate(soft_reference.describe(sw.reference_losses(p)))
                          if soft else None),
    )
    text = manifest.to_json()
    rejects = sw.rejects_text(p.rejects)
    try:
        built = sw.rebuilt(shards, cache.load, entries_m, label_columns, soft)
        if remote:
            changed, more = sw.write_uri(out, text, built, rejects), []
        else:
            changed, more = sw.write_local(out, text, built, rejects)
    except DatasetError as e:
        # A full disk or a refused upload at the very end: the preprocessed results are kept, so
        # the re-run after freeing space (or fixing access) writes without decoding anything again.
        cache.close()
        size = sum(f.stat().st_size for f in cache.folder.rglob("*.result"))
        raise DatasetError(f"{e}. The {sum(r is not None for r in results)} preprocessed results are kept in "
                           f"{cache.folder} ({size / 2**20:.1f} MiB): re-run the same command to write the dataset "
                           "without reading the photographs again, or delete that folder to reclaim its space") from None
    except BaseException:
        cache.close()
        raise
    _drop(cache, notes)  # written: the saved results are spent
    return PrepareResult(out=out, counts=counts, rejects=p.rejects, changed=changed, notes=notes + more,
                         resumed=res.resumed, processed=res.processed, seconds=res.seconds)


def _old_manifest(out, remote: bool) -> dict | None:
    """The manifest of the dataset `out` holds now, or None (none, or unreadable: then the
    write itself decides, as before)."""
    try:
        return json.loads(storage.read_text(storage.join(out, MANIFEST)) if remote
                          else (Path(out) / MANIFEST).read_text())
    except (OSError, ValueError, storage.StorageError):
        return None


def _drop(cache: WorkCache, notes: list[str]) -> None:
    try:
        notes.extend(cache.remove())
    except OSError as e:
        notes.append(f"could not remove the work folder {cache.folder} ({e.strerror or e}); delete it by hand")
