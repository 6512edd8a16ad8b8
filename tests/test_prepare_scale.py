"""Issue 17: `ablate prepare` at scale. The same bytes on 1 and 2 CPUs (through Ray),
an interrupted prepare resumed to the same dataset, output to s3://, --index, nested
folders, big mask folders, the progress display. Sources are a few DRIVE photographs
at 32 px (~0.1 s each)."""

from __future__ import annotations

import csv
import functools
import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ablate.data import prepare_tasks
from ablate.data.guard import DEFAULT_MAX_PIXELS
from ablate.data.shards import DatasetError, prepare, read_manifest, shard_paths
from ablate.data.sources import scan
from ablate.io import sha256_file
from ablate.ui.progress import Progress
from tests.s3_server import BUCKET

STEMS = ("01_test", "02_test", "03_test", "04_test", "05_test", "21_training")


def _src(drive_dir: Path, folder: Path, stems=STEMS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        shutil.copy(drive_dir / "images" / f"{stem}.tif", folder / f"{stem}.tif")
    shutil.copy(drive_dir / "images" / "01_test.tif", folder / "zz_copy.tif")  # a duplicate
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


# ---- determinism -----------------------------------------------------------------------------

def test_same_bytes_on_one_cpu_in_process_and_through_ray_on_one_and_two_cpus(ray_local, drive_dir, tmp_path, monkeypatch):
    src = _src(drive_dir, tmp_path / "src")
    calls = []
    real = prepare_tasks.process
    monkeypatch.setattr(prepare_tasks, "process", lambda job, s: calls.append(job.index) or real(job, s))
    one = prepare(src, tmp_path / "one", size=32, rows_per_shard=2, cpus=1)
    assert len(calls) == len(STEMS) + 2  # ran here, in this process
    calls.clear()
    # in_process_below=0: through Ray tasks even for 8 files (workers run the real
    # `process`, so the spy above sees nothing); two at a time finish in any order.
    two = prepare(src, tmp_path / "two", size=32, rows_per_shard=2, cpus=2, in_process_below=0)
    ray1 = prepare(src, tmp_path / "ray1", size=32, rows_per_shard=2, cpus=1, in_process_below=0)
    assert calls == []
    assert one.counts == two.counts == ray1.counts and sum(one.counts.values()) == len(STEMS)
    assert len(read_manifest(tmp_path / "one")["shards"]) >= 3
    assert _files(tmp_path / "one") == _files(tmp_path / "two") == _files(tmp_path / "ray1")
    assert dict(one.rejects)["zz_copy.tif"] == "duplicate of 01_test.tif (same content)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "ray1", "src", "two"]  # no work folders left


# ---- resume ----------------------------------------------------------------------------------

KILLED = """
import os, signal, sys
from ablate.data import work
real, n = work.WorkCache.store, []
def store_then_die(self, key, rec):
    real(self, key, rec)
    n.append(key)
    if len(n) == 4:  # killed (no cleanup runs) with four files' results saved
        os.kill(os.getpid(), signal.SIGKILL)
work.WorkCache.store = store_then_die
from ablate.data.shards import prepare
prepare(sys.argv[1], sys.argv[2], size=32, rows_per_shard=2)
"""


@pytest.mark.fault
def test_killed_prepare_resumes_to_the_same_dataset_and_says_what_it_skipped(drive_dir, tmp_path):
    from ablate.cli import app

    src = _src(drive_dir, tmp_path / "src")
    ref = prepare(src, tmp_path / "ref", size=32, rows_per_shard=2)
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-c", KILLED, str(src), str(out)], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert p.returncode == -9, p.stderr
    assert not out.exists()
    entries = sorted((tmp_path / "out.work").rglob("*.result"))
    assert len(entries) == 4
    # One saved result damaged (as by a machine crash): found by its checksum, recomputed.
    entries[0].write_bytes(entries[0].read_bytes()[:-7])
    res = CliRunner().invoke(app, ["prepare", str(src), "--out", str(out), "--size", "32"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "resumed: 3 file(s) already prepared by an interrupted run were skipped" in res.output
    assert "5 prepared now" in res.output
    # rows_per_shard differs from the CLI's default 512, so compare with a reference made alike
    ref512 = prepare(src, tmp_path / "ref512", size=32)
    assert _files(out) == _files(tmp_path / "ref512")
    assert ref.counts == ref512.counts
    assert not (tmp_path / "out.work").exists()


def test_resume_ignores_results_of_other_settings(drive_dir, tmp_path):
    src = _src(drive_dir, tmp_path / "src", STEMS[:2])
    work = tmp_path / "w"
    prepare(src, tmp_path / "a", size=32, work=work)
    assert not work.exists()
    # a leftover result made at another size must not be used
    from ablate.data.work import WorkCache

    c = WorkCache(work, {"size": 48, "max_pixels": 60_000_000})
    key = c.key(str(src / "01_test.tif"), None, None)
    c.store(key, {"id": "0" * 16, "reject": "stale", "image": None, "fov": None, "vessel": None,
                  "orig_height": None, "orig_width": None, "fov_source": None})
    c.close()
    r = prepare(src, tmp_path / "b", size=32, work=work)
    assert r.resumed == 0 and r.processed == 4 and sum(r.counts.values()) == 2
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def _spy(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = prepare_tasks.process
    monkeypatch.setattr(prepare_tasks, "process", lambda job, s: calls.append(job.index) or real(job, s))
    return calls


def test_unchanged_rerun_reads_no_file_and_rewrites_nothing(drive_dir, tmp_path, monkeypatch):
    src = _src(drive_dir, tmp_path / "src", STEMS[:3])
    calls = _spy(monkeypatch)
    first = prepare(src, tmp_path / "out", size=32, rows_per_shard=2, cpus=1)
    assert len(calls) == 5
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "out").iterdir()}
    calls.clear()
    again = prepare(src, tmp_path / "out", size=32, rows_per_shard=2, cpus=1)
    assert calls == [] and again.processed == 0 and not again.changed
    assert again.counts == first.counts and again.rejects == first.rejects
    assert again.notes == [again.notes[0]] and again.notes[0].startswith("input unchanged since this dataset was written (5 files")
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "out").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no work folder left


def test_a_fingerprint_that_cannot_be_recorded_is_said(drive_dir, tmp_path, monkeypatch):
    from ablate.data import unchanged

    src = _src(drive_dir, tmp_path / "src", STEMS[:1])
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(unchanged, "record_path", lambda out: tmp_path / "file" / "record.json")  # not a folder
    r = prepare(src, tmp_path / "out", size=32, cpus=1)
    assert r.changed and r.notes[-1].startswith(f"could not record the input's fingerprint in {tmp_path}/file/record.json")
    assert r.notes[-1].endswith("a re-run on this unchanged input will read every file again")


@pytest.mark.parametrize("change", ["touch", "option", "shard"])
def test_a_changed_input_option_or_damaged_output_is_prepared_again(drive_dir, tmp_path, monkeypatch, change):
    src = _src(drive_dir, tmp_path / "src", STEMS[:3])
    out = tmp_path / "out"
    first = prepare(src, out, size=32, rows_per_shard=2, cpus=1)
    calls = _spy(monkeypatch)
    cap = DEFAULT_MAX_PIXELS
    if change == "touch":  # same bytes, new modification time: read again, same dataset
        os.utime(src / f"{STEMS[0]}.tif", ns=(1, 1))
    elif change == "option":  # a higher pixel cap: every file read again, none of them near it
        cap += 1
    else:
        shard = out / read_manifest(out)["shards"][0]["file"]
        shard.write_bytes(shard.read_bytes()[:-1] + b"x")
    r = prepare(src, out, size=32, rows_per_shard=2, cpus=1, max_pixels=cap)
    assert len(calls) == 5 and r.processed == 5
    assert not any(n.startswith("input unchanged") for n in r.notes)
    assert r.changed == (change == "shard")
    assert r.counts == first.counts
    for entry in read_manifest(out)["shards"]:
        assert sha256_file(out / entry["file"]) == entry["sha256"]


# ---- s3:// output ----------------------------------------------------------------------------



def test_prepare_to_s3_writes_the_same_dataset_manifest_last(s3, drive_dir, tmp_path):
    from ablate import storage

    src = _src(drive_dir, tmp_path / "src")
    local = prepare(src, tmp_path / "local", size=32, rows_per_shard=2)
    uri = f"s3://{BUCKET}/data/drive"
    r = prepare(src, uri, size=32, rows_per_shard=2)
    assert r.changed and r.counts == local.counts and r.rejects == local.rejects
    assert storage.read_text(f"{uri}/manifest.json") == (tmp_path / "local" / "manifest.json").read_text()
    assert storage.read_bytes(f"{uri}/rejects.csv") == (tmp_path / "local" / "rejects.csv").read_bytes()
    assert all(storage.read_bytes(p) == (tmp_path / "local" / Path(p).name).read_bytes()
               for s in ("train", "val", "test") if r.counts[s] for p in shard_paths(uri, s))
    assert not prepare(src, uri, size=32, rows_per_shard=2).changed  # unchanged: nothing rewritten
    # A changed dataset with fewer shards: the old manifest and the shards it alone named are gone.
    r = prepare(src, uri, size=32, rows_per_shard=100)
    assert r.changed and sorted(storage.list_files(uri)) == sorted(
        ["manifest.json", "rejects.csv"] + [s["file"] for s in read_manifest(uri)["shards"]])
    storage.write_text(f"{uri}/notes.txt", "mine")
    with pytest.raises(DatasetError, match=r"holds 1 entry that is not part of a prepared dataset \(notes.txt\)"):
        prepare(src, uri, size=40)


# ---- --index, nested folders, big folders ------------------------------------------------------

def _nested(drive_dir: Path, root: Path) -> Path:
    for stem, sub in zip(STEMS, ("2019/01", "2019/01", "2019/02", "2020/07", "2020/07", "misc")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(drive_dir / "images" / f"{stem}.tif", root / sub / f"{stem}.tif")
    return root


def test_index_with_split_column_csv_and_parquet(drive_dir, tmp_path):
    from ablate.cli import app

    root = _nested(drive_dir, tmp_path / "archive")
    rows = [("2019/01/01_test.tif", "test"), ("2019/01/02_test.tif", "train"), ("2019/02/03_test.tif", "validation"),
            ("2020/07/04_test.tif", "train"), ("2020/07/05_test.tif", ""), ("gone/06_test.tif", "test")]
    index = root / "index.csv"
    with index.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "split", "age"])
        w.writerows(rows)
    res = CliRunner().invoke(app, ["prepare", "--index", str(index), "--out", str(tmp_path / "out"), "--size", "32"])
    assert res.exit_code == 0, res.output
    m = read_manifest(tmp_path / "out")
    # 3 train/val rows (one seeded val_from_train draw may move a train row to val)
    c = m["counts"]
    assert c["test"] == 1 and c["train"] + c["val"] == 3 and c["val"] >= 1 and m["source"] == str(index.resolve())
    assert m["preprocessing"]["split"] == "dataset's own" and m["preprocessing"]["split_missing"] == "skip"
    rejects = dict(csv.reader(io.StringIO((tmp_path / "out" / "rejects.csv").read_text())))
    assert rejects["2020/07/05_test.tif"] == "not listed in split.csv (--split-missing skip)"
    assert rejects["gone/06_test.tif"].startswith("cannot read file (No such file")
    assert "the index's split column does not list 1 of 6 image(s)" in res.output
    test_rows = pq.read_table(shard_paths(tmp_path / "out", "test")[0]).to_pylist()
    assert [r["source"] for r in test_rows] == ["2019/01/01_test.tif"]
    # The same index as Parquet: the same dataset.
    pq.write_table(pa.Table.from_pylist([{"path": p, "split": s or None} for p, s in rows]), root / "index.parquet")
    prepare(None, tmp_path / "pq", size=32, index=root / "index.parquet")
    assert _files(tmp_path / "pq")["rejects.csv"] == _files(tmp_path / "out")["rejects.csv"]
    assert {k: v for k, v in read_manifest(tmp_path / "pq").items() if k != "source"} == \
        {k: v for k, v in m.items() if k != "source"}


@pytest.mark.bad_input
def test_index_mistakes_are_refused_naming_the_line(drive_dir, tmp_path):
    root = _nested(drive_dir, tmp_path / "archive")
    bad = {"index1.csv": ("path,split\n2019/01/01_test.tif,test\n2019/01/01_test.tif,train\n",
                          r"line 3: '2019/01/01_test.tif' already listed on line 2"),
           "index2.csv": ("path,split\n2019/01/01_test.tif,tset\n", r"line 2: unknown split 'tset'"),
           "index3.csv": ("file,split\na.tif,test\n", r"expected a 'path' column"),
           "index4.csv": ("path\n\n", r"no rows")}
    for name, (text, msg) in bad.items():
        (root / name).write_text(text)
        with pytest.raises(DatasetError, match=msg):
            prepare(None, tmp_path / "out", size=32, index=root / name)
    with pytest.raises(DatasetError, match="either a source folder or --index"):
        prepare(root, tmp_path / "out", size=32, index=root / "index1.csv")


def test_nested_plain_folder_is_scanned_with_relative_names(drive_dir, tmp_path):
    root = _nested(drive_dir, tmp_path / "archive")
    r = prepare(root, tmp_path / "out", size=32)
    assert sum(r.counts.values()) == len(STEMS) and r.rejects == []
    sources = {row["source"] for s in ("train", "val", "test") if r.counts[s]
               for p in shard_paths(tmp_path / "out", s) for row in pq.read_table(p, columns=["source"]).to_pylist()}
    assert "2020/07/05_test.tif" in sources and "misc/21_training.tif" in sources


def test_folder_of_ten_thousand_images_and_masks_scans_in_seconds(tmp_path):
    """Masks named <stem>_mask: the old matcher compared every image with every mask
    (10^8 comparisons here); the index finds each in O(log n)."""
    for d in ("images", "fov"):
        (tmp_path / d).mkdir()
    n = 10_000
    for i in range(n):
        (tmp_path / "images" / f"{i:05d}_img.png").touch()
        (tmp_path / "fov" / f"{i:05d}_img_mask.png").touch()
    t = time.perf_counter()
    items = scan(tmp_path)
    took = time.perf_counter() - t
    assert len(items) == n and all(it.fov.name == it.image.stem + "_mask.png" for it in items)
    assert took < 5.0, f"scan took {took:.1f} s"


# ---- progress ----------------------------------------------------------------------------------

def test_progress_bar_on_a_terminal_and_one_line_otherwise(drive_dir, tmp_path):
    src = _src(drive_dir, tmp_path / "src", STEMS[:2])
    log = io.StringIO()
    shown = functools.partial(Progress, "prepare", unit="files", stream=log, plain=True, every_pct=None,
                              rate_unit="images/s")
    prepare(src, tmp_path / "a", size=32, progress=shown)
    (line,) = log.getvalue().splitlines()  # off a terminal: the end line only
    assert re.fullmatch(r"prepare: 4/4 files in \d+s, [\d.]+ images/s, 2 rejected", line), line
    # A resumed run: earlier files count done, not in the rate; the counts follow each line.
    now = [0.0]
    term = io.StringIO()
    with Progress("prepare", 10, "files", stream=term, plain=True, every_pct=50, min_interval_s=0, clock=lambda: now[0],
                  resumed=4, counts={"rejected": 1}, rate_unit="images/s") as p:
        now[0] = 2.0
        p.advance(1, rejected=2)
    first, last = term.getvalue().splitlines()
    assert first == "prepare: 5/10 files (50%), 4 resumed, 0.5 images/s, 2 rejected, elapsed 2s, ETA 10s", first
    assert last == "prepare: 5/10 files in 2s, 4 resumed, 0.5 images/s, 2 rejected"
    # On a terminal: the bar, with the same details beside it.
    bar = io.StringIO()
    with Progress("prepare", 10, "files", stream=bar, plain=False, resumed=4, counts={"rejected": 1},
                  rate_unit="images/s") as p:
        p.advance(1, rejected=2)
    assert "5/10 files" in bar.getvalue() and "4 resumed" in bar.getvalue() and "2 rejected" in bar.getvalue()


# ---- speed of the per-image work ------------------------------------------------------------

def test_fill_holes_by_labelling_equals_scipy_binary_fill_holes():
    """The faster hole filling of the thresholded FOV must give binary_fill_holes's exact
    result, or a re-prepare would change every dataset made before it."""
    import numpy as np
    from scipy import ndimage

    from ablate.data.preprocess import fill_holes

    rng = np.random.default_rng(0)
    masks = [rng.random(tuple(rng.integers(1, 48, 2))) < rng.uniform(0.2, 0.95) for _ in range(200)]
    masks += [np.ones((5, 7), bool), np.zeros((4, 4), bool), np.pad(np.ones((9, 9), bool), 2) ^ np.pad(np.ones((3, 3), bool), 5)]
    for m in masks:
        out = fill_holes(m)
        assert out.dtype == bool and (out == ndimage.binary_fill_holes(m)).all()
