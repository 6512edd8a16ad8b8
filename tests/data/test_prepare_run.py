"""`ablate prepare`: real DRIVE photographs, other layouts, and broken files."""

from __future__ import annotations

import csv
import functools
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ablate.data.preprocess import decode_png
from ablate.data.shards import DatasetError, prepare, shard_paths
from ablate.io import sha256_file
from ablate.ui.progress import Progress
from tests.helpers.images import SIX_DRIVE_STEMS, drive_folder_with_a_copy_and_a_broken_file


def _rows(out: Path, split: str) -> list[dict]:
    return [r for p in shard_paths(out, split) for r in pq.read_table(p).to_pylist()]


def test_drive_keeps_official_split_and_masks(drive_dir, tmp_path):
    out = tmp_path / "drive"
    r = prepare(drive_dir, out, size=64)
    # 20 official training images (2 carved out as val by a seeded hash) + 20 test.
    assert r.counts["test"] == 20
    assert r.counts["train"] + r.counts["val"] == 20 and r.counts["val"] >= 1
    assert r.rejects == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["image_size"] == 64 and manifest["counts"] == r.counts
    for s in manifest["shards"]:
        assert sha256_file(out / s["file"]) == s["sha256"]
    test_rows = _rows(out, "test")
    assert {row["source"] for row in test_rows} == {f"images/{i:02d}_test.tif" for i in range(1, 21)}
    for row in test_rows[:3]:
        img, fov, ves = (decode_png(row[k]) for k in ("image", "fov", "vessel"))
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert fov.shape == ves.shape == (64, 64)
        assert row["fov_source"] == "mask" and (row["orig_height"], row["orig_width"]) == (584, 565)
        # DRIVE's vessel fraction inside the FOV is 0.087-0.168 at full size; at 64 px thin
        # vessels merge or vanish, so allow a wider band but demand a real vessel map.
        frac = (ves > 0).sum() / (fov > 0).sum()
        assert 0.03 < frac < 0.3
        assert img[fov == 0].max() == 0  # outside the FOV is zeroed


def test_rerun_changes_nothing(drive_dir, tmp_path):
    out = tmp_path / "drive"
    prepare(drive_dir, out, size=32)
    before = {p.name: (p.stat().st_mtime_ns, sha256_file(p)) for p in out.iterdir()
              if p.suffix in (".parquet", ".json")}
    r = prepare(drive_dir, out, size=32)
    after = {p.name: (p.stat().st_mtime_ns, sha256_file(p)) for p in out.iterdir()
             if p.suffix in (".parquet", ".json")}
    assert not r.changed and before == after


def test_ids_are_content_hashes_stable_across_folders(drive_dir, tmp_path):
    src = tmp_path / "plain"
    src.mkdir()
    for stem in ("01_test", "02_test", "21_training"):
        shutil.copy(drive_dir / "images" / f"{stem}.tif", src / f"{stem}.tif")
    a = prepare(src, tmp_path / "a", size=32)
    prepare(drive_dir, tmp_path / "b", size=32)
    ids_a = {r["id"] for s in ("train", "val", "test") if a.counts[s] for r in _rows(tmp_path / "a", s)}
    ids_b = {r["id"] for s in ("train", "val", "test") for r in _rows(tmp_path / "b", s)}
    assert len(ids_a) == 3 and ids_a <= ids_b


def test_plain_folder_thresholds_fov_and_splits_by_seed(drive_dir, tmp_path):
    src = tmp_path / "plain"
    src.mkdir()
    for i in range(1, 11):
        shutil.copy(drive_dir / "images" / f"{i:02d}_test.tif", src / f"img{i}.tif")
    out = tmp_path / "out"
    r = prepare(src, out, size=32, seed=3)
    assert sum(r.counts.values()) == 10
    rows = [row for s in ("train", "val", "test") if r.counts[s] for row in _rows(out, s)]
    assert all(row["fov_source"] == "threshold" and row["vessel"] is None for row in rows)
    # The thresholded FOV agrees with DRIVE's own mask on the same photograph.
    ref = decode_png(next(x for x in _rows(prepare(drive_dir, tmp_path / "ref", size=32).out, "test")
                          if x["source"] == "images/01_test.tif")["fov"]) > 0
    mine = decode_png(next(x for x in rows if x["source"] == "img1.tif")["fov"]) > 0
    assert (ref & mine).sum() / (ref | mine).sum() > 0.9


def test_original_drive_layout_with_split_folders(drive_dir, tmp_path):
    """training/ and test/ folders, 1st_manual/ and mask/ with DRIVE's original file names."""
    for folder, stem, num in (("training", "21_training", "21"), ("test", "01_test", "01")):
        d = tmp_path / "DRIVE" / folder
        for sub in ("images", "1st_manual", "mask"):
            (d / sub).mkdir(parents=True)
        shutil.copy(drive_dir / "images" / f"{stem}.tif", d / "images" / f"{stem}.tif")
        shutil.copy(drive_dir / "vessels" / f"{stem}.gif", d / "1st_manual" / f"{num}_manual1.gif")
        shutil.copy(drive_dir / "fov" / f"{stem}.gif", d / "mask" / f"{stem}_mask.gif")
    out = tmp_path / "out"
    r = prepare(tmp_path / "DRIVE", out, size=32, val_from_train=0.0)
    assert r.counts == {"train": 1, "val": 0, "test": 1}
    for split in ("train", "test"):
        (row,) = _rows(out, split)
        assert row["vessel"] is not None and row["fov_source"] == "mask"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.bad_input
def test_broken_files_are_listed_and_good_ones_kept(drive_dir, tmp_path):
    src = tmp_path / "messy"
    src.mkdir()
    good = ["01_test", "02_test", "03_test"]
    for stem in good:
        shutil.copy(drive_dir / "images" / f"{stem}.tif", src / f"{stem}.tif")
    png = io.BytesIO()
    Image.open(drive_dir / "images" / "04_test.tif").save(png, format="PNG")
    _write(src / "empty.png", b"")
    _write(src / "truncated.png", png.getvalue()[: len(png.getvalue()) // 3])
    _write(src / "notes.jpg", b"this is not an image at all")
    Image.open(drive_dir / "images" / "05_test.tif").convert("L").save(src / "gray.png")
    Image.new("RGB", (20, 20), (120, 30, 10)).save(src / "tiny.png")
    Image.new("RGB", (200, 200), (0, 0, 0)).save(src / "black.png")
    shutil.copy(drive_dir / "images" / "01_test.tif", src / "copy_of_01.tif")
    out = tmp_path / "out"
    r = prepare(src, out, size=32)
    assert sum(r.counts.values()) == len(good)
    with (out / "rejects.csv").open() as f:
        rejects = {row["file"]: row["reason"] for row in csv.DictReader(f)}
    assert set(rejects) == {"empty.png", "truncated.png", "notes.jpg", "gray.png", "tiny.png", "black.png", "copy_of_01.tif"}
    assert "0 bytes" in rejects["empty.png"]
    assert "truncated" in rejects["truncated.png"] or "corrupt" in rejects["truncated.png"]
    assert "not a readable image" in rejects["notes.jpg"]
    assert "grayscale" in rejects["gray.png"]
    assert "too small" in rejects["tiny.png"]
    assert "no field of view" in rejects["black.png"]
    assert "duplicate of 01_test.tif" in rejects["copy_of_01.tif"]


@pytest.mark.bad_input
def test_nothing_valid_fails_with_reason(tmp_path):
    src = tmp_path / "bad"
    src.mkdir()
    _write(src / "a.png", b"")
    with pytest.raises(DatasetError, match="no valid fundus photograph.*a.png: empty file"):
        prepare(src, tmp_path / "out", size=32)
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.bad_input
def test_empty_folder_fails(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        prepare(tmp_path / "empty", tmp_path / "out", size=32)


def test_altered_shard_is_named(drive32, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(drive32, out)
    shard = Path(shard_paths(out, "train")[0])
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DatasetError, match=f"{shard.name}: checksum differs"):
        shard_paths(out, "train")


@pytest.mark.bad_input
def test_colour_variants_are_converted_and_odd_inputs_rejected(drive_dir, tmp_path):
    """RGBA and palette photographs are kept (converted to RGB); 16-bit single-channel
    images and masks of the wrong size are rejected with the reason."""
    src = tmp_path / "odd"
    (src / "images").mkdir(parents=True)
    (src / "fov").mkdir()
    rgb = Image.open(drive_dir / "images" / "01_test.tif")
    rgb.convert("RGBA").save(src / "images" / "rgba.png")
    Image.open(drive_dir / "images" / "02_test.tif").convert("P", palette=Image.Palette.ADAPTIVE).save(src / "images" / "palette.png")
    Image.fromarray(np.asarray(Image.open(drive_dir / "images" / "03_test.tif"))[..., 1].astype(np.uint16) * 256).save(src / "images" / "deep16.png")
    shutil.copy(drive_dir / "images" / "04_test.tif", src / "images" / "badmask.tif")
    Image.open(drive_dir / "fov" / "04_test.gif").resize((100, 100)).save(src / "fov" / "badmask.png")
    out = tmp_path / "out"
    r = prepare(src, out, size=32)
    assert sum(r.counts.values()) == 2
    reasons = dict(r.rejects)
    assert set(reasons) == {"images/deep16.png", "images/badmask.tif"}
    assert "single-channel" in reasons["images/deep16.png"]
    assert "mask badmask.png is 100x100, image is 565x584" in reasons["images/badmask.tif"]


@pytest.mark.bad_input
def test_unreadable_folder_is_named(drive_dir, tmp_path):
    """A folder the user cannot read: the error names it (run as an unprivileged user,
    since root reads everything)."""
    import os
    import subprocess
    import sys
    import tempfile

    # pytest's tmp_path sits under a root-only folder; the unprivileged user needs a way in.
    base = Path(tempfile.mkdtemp(prefix="ablate-perm-"))
    base.chmod(0o777)
    src = base / "dataset"
    locked = src / "images"
    locked.mkdir(parents=True)
    shutil.copy(drive_dir / "images" / "01_test.tif", locked / "a.tif")
    locked.chmod(0o000)
    code = ("import sys\nfrom ablate.cli import app\nsys.argv=['ablate','prepare',sys.argv[1],'--out',sys.argv[2]]\napp()")
    cmd = [sys.executable, "-c", code, str(src), str(base / "out")]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    try:
        res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120, cwd="/")
        # The top folder itself: typer/click refuses it before our code runs, naming it.
        src.chmod(0o000)
        top = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120, cwd="/", env={"COLUMNS": "300"})
    finally:
        src.chmod(0o755)
        locked.chmod(0o755)
        shutil.rmtree(base)
    assert res.returncode == 2, res.stderr
    assert f"{locked}: cannot read folder" in res.stderr
    assert top.returncode == 2 and f"path '{src}' is not readable" in top.stderr


# ---- progress ----------------------------------------------------------------------------------

def test_progress_bar_on_a_terminal_and_one_line_otherwise(drive_dir, tmp_path):
    src = drive_folder_with_a_copy_and_a_broken_file(drive_dir, tmp_path / "src", SIX_DRIVE_STEMS[:2])
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
