"""Finding photographs and masks in a folder (ablate.data.sources): a strict split.csv, unreadable entries listed and never opened, names that are not UTF-8, nested and very large folders."""

from __future__ import annotations

import builtins
import io
import json
import os
import socket
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ablate.data.shards import DatasetError, prepare, read_manifest, shard_paths
from ablate.data.sources import scan
from tests.helpers.images import (
    SIX_DRIVE_STEMS,
    THREE_DRIVE_STEMS,
    copy_drive_images,
    nested_drive_folder,
    synthetic_fundus,
    synthetic_fundus_folder,
)
from tests.helpers.prepared import id_source_split_rows, read_rejects

# ---- f6: strict split.csv ----------------------------------------------------------------

def _with_split(drive_dir: Path, tmp_path: Path, rows: str, stems=("01_test", "02_test", "21_training")) -> Path:
    src = tmp_path / "src"
    copy_drive_images(drive_dir, src / "images", stems)
    (src / "split.csv").write_text("stem,split\n" + rows)
    return src


@pytest.mark.bad_input
def test_stems_written_with_extension_match(drive_dir, tmp_path):
    """Finding F6 (issue 20): Stems written with extension match."""

    src = _with_split(drive_dir, tmp_path, "01_test.tif,test\n02_test.TIF,test\n21_training.tif,training\n")
    r = prepare(src, tmp_path / "out", size=32, val_from_train=0.0)
    assert r.counts == {"train": 1, "val": 0, "test": 2}
    assert read_manifest(tmp_path / "out")["preprocessing"]["split"] == "dataset's own"


@pytest.mark.bad_input
def test_duplicate_stems_are_refused_naming_lines(drive_dir, tmp_path):
    """Finding F6 (issue 20): Duplicate stems are refused naming lines."""

    src = _with_split(drive_dir, tmp_path, "01_test,test\n02_test,test\n21_training,train\n01_test.tif,train\n")
    with pytest.raises(DatasetError, match=r"split.csv: stem listed more than once: '01_test' \(lines 2 and 5\)"):
        prepare(src, tmp_path / "out", size=32)


@pytest.mark.bad_input
def test_stems_matching_no_image_are_refused(drive_dir, tmp_path):
    """Finding F6 (issue 20): Stems matching no image are refused."""

    src = _with_split(drive_dir, tmp_path, "01_test,test\n02_test,test\n21_training,train\n99_tset,test\n")
    with pytest.raises(DatasetError, match=r"split.csv: 1 stem\(s\) match no image in .*: '99_tset' \(line 5\)"):
        prepare(src, tmp_path / "out", size=32)


@pytest.mark.bad_input
def test_unknown_split_name_is_refused_naming_the_row(drive_dir, tmp_path):
    """Finding F6 (issue 20): Unknown split name is refused naming the row."""

    src = _with_split(drive_dir, tmp_path, "01_test,test\n02_test,tset\n21_training,train\n")
    with pytest.raises(DatasetError, match=r"split.csv line 3: unknown split 'tset' for stem '02_test'"):
        prepare(src, tmp_path / "out", size=32)


@pytest.mark.bad_input
def test_unlisted_images_are_counted_and_skipped_or_trained_on_request(drive_dir, tmp_path):
    """Finding F6 (issue 20): Unlisted images are counted and skipped or trained on request."""

    src = _with_split(drive_dir, tmp_path, "01_test,test\n02_test,test\n")
    r = prepare(src, tmp_path / "skip", size=32, val_from_train=0.0)
    assert r.counts == {"train": 0, "val": 0, "test": 2}
    assert dict(r.rejects) == {"images/21_training.tif": "not listed in split.csv (--split-missing skip)"}
    assert r.notes == [("split.csv does not list 1 of 3 image(s) (it lists train 0, val 0, test 2): "
                        "21_training.tif; skipped (listed in rejects.csv) (--split-missing skip)")]
    assert read_manifest(tmp_path / "skip")["preprocessing"]["split_missing"] == "skip"
    r = prepare(src, tmp_path / "train", size=32, val_from_train=0.0, split_missing="train")
    assert r.counts == {"train": 1, "val": 0, "test": 2} and r.rejects == []
    assert "put in train (--split-missing train)" in r.notes[0]
    assert read_manifest(tmp_path / "train")["preprocessing"]["split_missing"] == "train"
    with pytest.raises(DatasetError, match="--split-missing 'test': expected one of skip, train"):
        prepare(src, tmp_path / "bad", size=32, split_missing="test")


@pytest.mark.bad_input
def test_cli_reports_unlisted_images_and_refuses_bad_choice(drive_dir, tmp_path):
    """Finding F6 (issue 20): Cli reports unlisted images and refuses bad choice."""

    from ablate.cli import app

    src = _with_split(drive_dir, tmp_path, "01_test,test\n", stems=("01_test", "02_test"))
    res = CliRunner().invoke(app, ["prepare", str(src), "--out", str(tmp_path / "out"), "--size", "32",
                                   "--split-missing", "train"])
    assert res.exit_code == 0, res.output
    assert "split.csv does not list 1 of 2 image(s)" in res.output and "put in train" in res.output
    res = CliRunner().invoke(app, ["prepare", str(src), "--out", str(tmp_path / "o2"), "--split-missing", "nope"])
    assert res.exit_code == 2 and "--split-missing 'nope'" in res.output


@pytest.mark.bad_input
def test_split_csv_that_is_not_a_file_is_refused(drive_dir, tmp_path):
    """Finding F6 (issue 20): A dangling split.csv link must not pass as "no split file" (a seeded split instead)."""
    src = tmp_path / "src"
    copy_drive_images(drive_dir, src / "images", THREE_DRIVE_STEMS[:1])
    (src / "split.csv").symlink_to(tmp_path / "elsewhere.csv")
    with pytest.raises(DatasetError, match=r"split.csv: not a readable regular file"):
        prepare(src, tmp_path / "out", size=32)


# ---- f13: unreadable entries ---------------------------------------------------------------

@pytest.mark.bad_input
def test_unreadable_entries_are_listed_and_never_opened(drive_dir, tmp_path, monkeypatch):
    """Finding F13 (issue 20): Unreadable entries are listed and never opened."""

    src = copy_drive_images(drive_dir, tmp_path / "src", THREE_DRIVE_STEMS[:2])
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
    assert read_rejects(tmp_path / "out") == dict(r.rejects)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["rejected"] == 5


# ---- finding 6: a file name that is not UTF-8 ----------------------------------------------------

@pytest.mark.bad_input
def test_latin1_file_names_are_prepared_or_rejected_under_an_escaped_name(tmp_path):
    import os

    from ablate.cli import app

    src = synthetic_fundus_folder(tmp_path / "src", n=3)
    synthetic_fundus(7).save(os.fsdecode(bytes(src) + b"/caf\xe9.png"))  # a latin-1 name: not UTF-8
    with open(os.fsencode(src) + b"/=cass\xe9.png", "wb") as f:  # and a broken one
        f.write(b"not an image")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["prepare", str(src), "--out", str(out), "--size", "32"])
    assert res.exit_code == 0, res.output
    # the summary line "OUT: 4 images {...}" (not the speed, "12.5 images/s", which may end in 5)
    assert f"{out}: 4 images {{" in res.output
    assert "caf\\xe9.png" in {row["source"] for row in id_source_split_rows(out)}
    text = (out / "rejects.csv").read_bytes().decode("utf-8")  # a UTF-8 file, the name escaped
    assert "cass\\xe9.png" in text and "not a readable image" in text


# ---- --index, nested folders, big folders ------------------------------------------------------

def test_nested_plain_folder_is_scanned_with_relative_names(drive_dir, tmp_path):
    root = nested_drive_folder(drive_dir, tmp_path / "archive")
    r = prepare(root, tmp_path / "out", size=32)
    assert sum(r.counts.values()) == len(SIX_DRIVE_STEMS) and r.rejects == []
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
