"""Issue 20, the dataset side: prepare under hostile files and unlucky failures.

f3: a failed re-prepare (disk full, a kill) leaves the previous dataset as it was;
f4: decompression bombs, huge and truncated files are rejected, each file read once;
f6: split.csv mistakes are refused, naming the lines;
f12: files and folders get the user's umask, not 0600;
f13: FIFOs, sockets, loops, dangling links and folders with image suffixes are listed
in rejects.csv, never opened.
Every source folder here holds a few DRIVE photographs, so each prepare takes ~1 s.
"""

from __future__ import annotations

import builtins
import csv
import errno
import io
import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageFile
from typer.testing import CliRunner

from ablate.data import prepare_tasks, swap
from ablate.data.shards import DatasetError, prepare, read_manifest, shard_paths
from ablate.io import write_text_atomic

STEMS = ("01_test", "02_test", "03_test")


def _plain(drive_dir: Path, folder: Path, stems=STEMS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        shutil.copy(drive_dir / "images" / f"{stem}.tif", folder / f"{stem}.tif")
    return folder


def _rejects(out: Path) -> dict[str, str]:
    with (out / "rejects.csv").open() as f:
        return {row["file"]: row["reason"] for row in csv.DictReader(f)}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---- f3: datasets replaced atomically ---------------------------------------------------

@pytest.mark.fault
def test_f3_disk_full_keeps_previous_dataset(drive_dir, tmp_path, monkeypatch):
    src = _plain(drive_dir, tmp_path / "src", STEMS + ("04_test",))
    out = tmp_path / "data"
    prepare(src, out, size=32, rows_per_shard=1)
    before = _snapshot(out)
    real, calls = swap.write_file, []

    def full_disk(path, data):
        calls.append(path.name)
        if len(calls) > 2:  # two shards of the new dataset written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(swap, "write_file", full_disk)
    with pytest.raises(DatasetError) as e:
        prepare(src, out, size=48, rows_per_shard=1)
    work = tmp_path / "data.work"
    assert str(e.value).startswith(f"disk full while writing {calls[-1]}; the previous dataset in {out} is unchanged. "
                                   f"The 4 preprocessed results are kept in {work} (")
    assert "re-run the same command to write the dataset without reading the photographs again" in str(e.value)
    assert _snapshot(out) == before
    assert read_manifest(out)["image_size"] == 32
    assert sum(len(shard_paths(out, s)) for s in ("train", "val", "test") if read_manifest(out)["counts"][s]) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "data.work", "src"]  # the partial folder is gone
    # Space freed: the re-run reads no photograph, and writes the new dataset.
    monkeypatch.setattr(swap, "write_file", real)
    decoded = []
    real_process = prepare_tasks.process
    monkeypatch.setattr(prepare_tasks, "process", lambda job, s: decoded.append(job) or real_process(job, s))
    r = prepare(src, out, size=48, rows_per_shard=1)
    assert decoded == [] and r.resumed == 4 and r.changed and read_manifest(out)["image_size"] == 48
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "src"]


@pytest.mark.fault
def test_f3_interrupted_swap_is_recovered_by_next_prepare(drive_dir, tmp_path):
    """A kill between the two renames (where no atomic exchange exists) leaves the previous
    dataset in <out>.old-PID and a partial <out>.new-PID: the next prepare puts the
    previous one back, removes the partial one, and says both."""
    src = _plain(drive_dir, tmp_path / "src", STEMS[:2])
    out = tmp_path / "data"
    prepare(src, out, size=32)
    before = _snapshot(out)
    pid = _dead_pid()
    old, new = tmp_path / f"data.old-{pid}", tmp_path / f"data.new-{pid}"
    out.rename(old)
    new.mkdir()
    (new / "train-00000.parquet").write_bytes(b"partial")
    r = prepare(src, out, size=32)
    assert not r.changed and _snapshot(out) == before  # the restored dataset is the identical one
    assert any(f"restored the previous dataset from {old}" in n for n in r.notes)
    assert any(f"removed {new}" in n for n in r.notes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "src"]


KILLED_PREPARE = """
import os, signal, sys
from ablate.data import prepare_tasks, swap
from ablate.data.shards import prepare
real, n = swap.write_file, []
def write_then_die(path, data):
    n.append(path)
    if len(n) > 2:  # killed (no cleanup runs) with two files of the new dataset written
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, data)
swap.write_file = write_then_die
prepare(sys.argv[1], sys.argv[2], size=48, rows_per_shard=1)
"""


@pytest.mark.fault
def test_f3_killed_prepare_keeps_previous_dataset(drive_dir, tmp_path):
    src = _plain(drive_dir, tmp_path / "src", STEMS)
    out = tmp_path / "data"
    prepare(src, out, size=32, rows_per_shard=1)
    before = _snapshot(out)
    p = subprocess.Popen([sys.executable, "-c", KILLED_PREPARE, str(src), str(out)], stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    _, err = p.communicate(timeout=120)
    assert p.returncode == -9, err
    assert _snapshot(out) == before and read_manifest(out)["image_size"] == 32
    assert shard_paths(out, "test")  # readable and verified
    partial = tmp_path / f"data.new-{p.pid}"
    assert len(list(partial.iterdir())) == 2  # what the killed run left
    r = prepare(src, out, size=32, rows_per_shard=1)
    assert not r.changed and r.notes[0] == f"removed {partial}, left by an interrupted prepare (process {p.pid})"
    assert r.notes[1].startswith("input unchanged since this dataset was written")  # and none of it read again
    assert sorted(q.name for q in tmp_path.iterdir()) == ["data", "src"]


@pytest.mark.fault
def test_f3_replace_without_atomic_exchange_leaves_no_leftovers(drive_dir, tmp_path, monkeypatch):
    src = _plain(drive_dir, tmp_path / "src", STEMS[:2])
    out = tmp_path / "data"
    prepare(src, out, size=32)
    monkeypatch.setattr(swap, "_exchange", lambda a, b: False)  # the two-rename path
    r = prepare(src, out, size=40)
    assert r.changed and read_manifest(out)["image_size"] == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "src"]


@pytest.mark.bad_input
def test_f3_out_with_foreign_files_is_refused(drive_dir, tmp_path):
    """Replacing the folder whole would delete a user's files kept in --out."""
    src = _plain(drive_dir, tmp_path / "src", STEMS[:1])
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match=r"--out .*data: holds 1 entry that is not part of a prepared dataset \(notes.txt\)"):
        prepare(src, out, size=32)
    assert _snapshot(out) == {"notes.txt": b"mine"}


# ---- f4: hostile and huge images --------------------------------------------------------

def _png_claiming(width: int, height: int) -> bytes:
    """A few-hundred-byte PNG whose IHDR claims width x height RGB pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.bad_input
def test_f4_decompression_bomb_is_rejected_and_good_images_prepared(drive_dir, tmp_path):
    src = _plain(drive_dir, tmp_path / "src")
    (src / "bomb.png").write_bytes(_png_claiming(40000, 40000))
    (src / "70mp.png").write_bytes(_png_claiming(10000, 7000))  # over the default cap, under Pillow's
    r = prepare(src, tmp_path / "out", size=32)
    assert sum(r.counts.values()) == 3
    rejects = _rejects(tmp_path / "out")
    assert rejects["bomb.png"].startswith("too many pixels, not decoded (decompression bomb guard: ")
    assert rejects["70mp.png"].startswith("too many pixels (10000x7000 = 70.0 MP; the cap is 60 MP")


@pytest.mark.bad_input
def test_f4_image_over_cap_is_rejected_from_its_header(drive_dir, tmp_path, monkeypatch):
    """DRIVE's 565x584 (330 kpx) passes a 350 kpx cap; a 600x600 image is refused undecoded."""
    src = _plain(drive_dir, tmp_path / "src", STEMS[:2])
    Image.open(drive_dir / "images" / "03_test.tif").resize((600, 600)).save(src / "big.png")
    decoded, real_load = [], ImageFile.ImageFile.load

    def spy_load(im):
        decoded.append(im.size)
        return real_load(im)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    r = prepare(src, tmp_path / "out", size=32, max_pixels=350_000)
    assert sum(r.counts.values()) == 2
    assert "too many pixels (600x600 = 0.4 MP; the cap is 0.35 MP" in dict(r.rejects)["big.png"]
    assert (600, 600) not in decoded and (565, 584) in decoded


@pytest.mark.bad_input
def test_f4_huge_file_rejected_unread_and_each_file_read_once(drive_dir, tmp_path, monkeypatch):
    src = _plain(drive_dir, tmp_path / "src", STEMS[:2])
    huge = src / "huge.png"
    with huge.open("wb") as f:
        f.truncate(3 << 30)  # 3 GB, sparse: no disk used
    opened: list[str] = []
    real_os_open, real_open = os.open, builtins.open

    def spy_os_open(path, *a, **k):
        opened.append(os.fspath(path))
        return real_os_open(path, *a, **k)

    def spy_open(path, *a, **k):
        if not isinstance(path, int):
            opened.append(os.fspath(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", spy_os_open)
    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(io, "open", spy_open)
    r = prepare(src, tmp_path / "out", size=32)
    monkeypatch.undo()
    assert sum(r.counts.values()) == 2
    assert "file too large (3221 MB" in dict(r.rejects)["huge.png"]
    assert str(huge) not in opened
    for stem in STEMS[:2]:
        assert opened.count(str(src / f"{stem}.tif")) == 1, opened


@pytest.mark.bad_input
def test_f4_truncated_jpeg_and_png_are_rejected(drive_dir, tmp_path):
    """Kept behaviour: cut-off files are rejects, not crashes."""
    src = _plain(drive_dir, tmp_path / "src", STEMS[:1])
    im = Image.open(drive_dir / "images" / "02_test.tif")
    for fmt, name in (("JPEG", "cut.jpg"), ("PNG", "cut.png")):
        buf = io.BytesIO()
        im.save(buf, format=fmt)
        (src / name).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    r = prepare(src, tmp_path / "out", size=32)
    reasons = dict(r.rejects)
    assert sum(r.counts.values()) == 1 and set(reasons) == {"cut.jpg", "cut.png"}
    assert all("truncated" in why for why in reasons.values()), reasons


@pytest.mark.bad_input
def test_f4_max_pixels_above_pillow_limit_is_refused(drive_dir, tmp_path):
    src = _plain(drive_dir, tmp_path / "src", STEMS[:1])
    with pytest.raises(DatasetError, match=r"--max-pixels 1000000000: above Pillow's decompression-bomb limit"):
        prepare(src, tmp_path / "out", size=32, max_pixels=10**9)


# ---- f6: strict split.csv ----------------------------------------------------------------

def _with_split(drive_dir: Path, tmp_path: Path, rows: str, stems=("01_test", "02_test", "21_training")) -> Path:
    src = tmp_path / "src"
    _plain(drive_dir, src / "images", stems)
    (src / "split.csv").write_text("stem,split\n" + rows)
    return src


@pytest.mark.bad_input
def test_f6_stems_written_with_extension_match(drive_dir, tmp_path):
    src = _with_split(drive_dir, tmp_path, "01_test.tif,test\n02_test.TIF,test\n21_training.tif,training\n")
    r = prepare(src, tmp_path / "out", size=32, val_from_train=0.0)
    assert r.counts == {"train": 1, "val": 0, "test": 2}
    assert read_manifest(tmp_path / "out")["preprocessing"]["split"] == "dataset's own"


@pytest.mark.bad_input
def test_f6_duplicate_stems_are_refused_naming_lines(drive_dir, tmp_path):
    src = _with_split(drive_dir, tmp_path, "01_test,test\n02_test,test\n21_training,train\n01_test.tif,train\n")
    with pytest.raises(DatasetError, match=r"split.csv: stem listed more than once: '01_test' \(lines 2 and 5\)"):
        prepare(src, tmp_path / "out", size=32)


@pytest.mark.bad_input
def test_f6_stems_matching_no_image_are_refused(drive_dir, tmp_path):
    src = _with_split(drive_dir, tmp_path, "01_test,test\n02_test,test\n21_training,train\n99_tset,test\n")
    with pytest.raises(DatasetError, match=r"split.csv: 1 stem\(s\) match no image in .*: '99_tset' \(line 5\)"):
        prepare(src, tmp_path / "out", size=32)


@pytest.mark.bad_input
def test_f6_unknown_split_name_is_refused_naming_the_row(drive_dir, tmp_path):
    src = _with_split(drive_dir, tmp_path, "01_test,test\n02_test,tset\n21_training,train\n")
    with pytest.raises(DatasetError, match=r"split.csv line 3: unknown split 'tset' for stem '02_test'"):
        prepare(src, tmp_path / "out", size=32)


@pytest.mark.bad_input
def test_f6_unlisted_images_are_counted_and_skipped_or_trained_on_request(drive_dir, tmp_path):
    src = _with_split(drive_dir, tmp_path, "01_test,test\n02_test,test\n")
    r = prepare(src, tmp_path / "skip", size=32, val_from_train=0.0)
    assert r.counts == {"train": 0, "val": 0, "test": 2}
    assert dict(r.rejects) == {"images/21_training.tif": "not listed in split.csv (--split-missing skip)"}
    assert r.notes == ["split.csv does not list 1 of 3 image(s) (it lists train 0, val 0, test 2): "
                       "21_training.tif; skipped (listed in rejects.csv) (--split-missing skip)"]
    assert read_manifest(tmp_path / "skip")["preprocessing"]["split_missing"] == "skip"
    r = prepare(src, tmp_path / "train", size=32, val_from_train=0.0, split_missing="train")
    assert r.counts == {"train": 1, "val": 0, "test": 2} and r.rejects == []
    assert "put in train (--split-missing train)" in r.notes[0]
    assert read_manifest(tmp_path / "train")["preprocessing"]["split_missing"] == "train"
    with pytest.raises(DatasetError, match="--split-missing 'test': expected one of skip, train"):
        prepare(src, tmp_path / "bad", size=32, split_missing="test")


@pytest.mark.bad_input
def test_f6_cli_reports_unlisted_images_and_refuses_bad_choice(drive_dir, tmp_path):
    from ablate.cli import app

    src = _with_split(drive_dir, tmp_path, "01_test,test\n", stems=("01_test", "02_test"))
    res = CliRunner().invoke(app, ["prepare", str(src), "--out", str(tmp_path / "out"), "--size", "32",
                                   "--split-missing", "train"])
    assert res.exit_code == 0, res.output
    assert "split.csv does not list 1 of 2 image(s)" in res.output and "put in train" in res.output
    res = CliRunner().invoke(app, ["prepare", str(src), "--out", str(tmp_path / "o2"), "--split-missing", "nope"])
    assert res.exit_code == 2 and "--split-missing 'nope'" in res.output


@pytest.mark.bad_input
def test_f6_split_csv_that_is_not_a_file_is_refused(drive_dir, tmp_path):
    """A dangling split.csv link must not pass as "no split file" (a seeded split instead)."""
    src = tmp_path / "src"
    _plain(drive_dir, src / "images", STEMS[:1])
    (src / "split.csv").symlink_to(tmp_path / "elsewhere.csv")
    with pytest.raises(DatasetError, match=r"split.csv: not a readable regular file"):
        prepare(src, tmp_path / "out", size=32)


# ---- f12: the user's umask -----------------------------------------------------------------

@pytest.mark.bad_input
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_f12_atomic_files_follow_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == mode


@pytest.mark.bad_input
def test_f12_prepared_dataset_follows_umask(drive_dir, tmp_path):
    src = _plain(drive_dir, tmp_path / "src", STEMS[:1])
    old = os.umask(0o027)
    try:
        prepare(src, tmp_path / "out", size=32)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o750
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()}
    assert len(modes) == 3 and set(modes.values()) == {0o640}, modes  # manifest, rejects, one shard


# ---- f13: unreadable entries ---------------------------------------------------------------

@pytest.mark.bad_input
def test_f13_unreadable_entries_are_listed_and_never_opened(drive_dir, tmp_path, monkeypatch):
    src = _plain(drive_dir, tmp_path / "src", STEMS[:2])
    (src / "dangling.png").symlink_to(src / "gone.png")
    (src / "loop.png").symlink_to(src / "loop.png")
    os.mkfifo(src / "fifo.png")
    (src / "folder.tif").mkdir()
    monkeypatch.chdir(src)  # a short relative name: socket paths are limited to 108 bytes
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("sock.jpg")
    bad = {str(src / n) for n in ("dangling.png", "loop.png", "fifo.png", "folder.tif", "sock.jpg")}
    real_os_open, real_open = os.open, builtins.open

    def guarded(real):
        def opener(path, *a, **k):
            # Opening the FIFO would block this test forever: fail instead.
            assert isinstance(path, int) or os.fspath(path) not in bad, f"opened {path}"
            return real(path, *a, **k)
        return opener

    monkeypatch.setattr(os, "open", guarded(real_os_open))
    monkeypatch.setattr(builtins, "open", guarded(real_open))
    monkeypatch.setattr(io, "open", guarded(real_open))
    try:
        r = prepare(src, tmp_path / "out", size=32)
    finally:
        sock.close()
    assert sum(r.counts.values()) == 2
    assert dict(r.rejects) == {
        "dangling.png": f"dangling symlink (target {src / 'gone.png'} does not exist)",
        "loop.png": "symlink loop (following the link never reaches a file)",
        "fifo.png": "not a regular file (a FIFO)",
        "folder.tif": "not a regular file (a directory)",
        "sock.jpg": "not a regular file (a socket)",
    }
    monkeypatch.undo()
    assert _rejects(tmp_path / "out") == dict(r.rejects)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["rejected"] == 5

