"""Writing the shards (ablate.data.shard_writer): the seeded split's exact counts, one photograph in two formats kept once, rejects.csv safe to open in a spreadsheet, output to s3://."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.data.shards import DatasetError, prepare, read_manifest, shard_paths
from tests.helpers.images import (
    drive_folder_with_a_copy_and_a_broken_file,
    synthetic_fundus,
    synthetic_fundus_folder,
)
from tests.helpers.prepared import id_source_split_rows
from tests.s3_server import BUCKET

# ---- finding 3: the default seeded split has exact counts, and stays put as files are added ---

def test_default_split_of_45_images_is_35_5_5(tmp_path):
    src = synthetic_fundus_folder(tmp_path / "src", n=45)
    r = prepare(src, tmp_path / "out", size=32)
    assert r.counts == {"train": 35, "val": 5, "test": 5}


def test_exact_split_counts_and_stability_under_added_images():
    from ablate.data.shard_writer import exact_split, split_counts

    ids = [f"{k:016x}" for k in range(300)]
    for n in (1, 4, 5, 9, 10, 15, 45, 99, 300):
        got = exact_split(ids[:n], 0, (0.8, 0.1))
        counts = tuple(sum(s == name for s in got.values()) for name in ("train", "val", "test"))
        assert counts == split_counts(n, (0.8, 0.1))
        want = max(int(n * 0.1 + 0.5), 1 if n >= 3 else 0)  # at least one val and test image from 3 on
        assert counts[2] == want and counts[1] == want, (n, counts)
    # adding k images moves an existing image only across a boundary the new images or the
    # new counts shift: at most k per boundary, plus how far the boundary itself moved
    for n, k in ((45, 1), (45, 5), (100, 3), (100, 50)):
        before, after = exact_split(ids[:n], 0, (0.8, 0.1)), exact_split(ids[: n + k], 0, (0.8, 0.1))
        moved = [i for i in before if before[i] != after[i]]
        (_, v0, t0), (_, v1, t1) = split_counts(n, (0.8, 0.1)), split_counts(n + k, (0.8, 0.1))
        assert len(moved) <= 2 * k + abs(t1 - t0) + abs((t1 + v1) - (t0 + v0)), (n, k, moved)
        # and never from train straight to test while test grows by no more than val shrinks
        assert not any(before[i] == "train" and after[i] == "test" for i in moved if k < n // 10)
    # the seed decides, not the order files were found in
    assert exact_split(ids[:45], 3, (0.8, 0.1)) == exact_split(ids[:45][::-1], 3, (0.8, 0.1))


@pytest.mark.bad_input
def test_same_photograph_as_tiff_and_png_is_kept_once_and_never_in_two_splits(tmp_path):
    src = tmp_path / "src"
    for split, stems in (("training", range(6)), ("test", range(6, 9))):
        synthetic_fundus_folder(src / split / "images", n=0)
        for k in stems:
            synthetic_fundus(k).save(src / split / "images" / f"img{k:03d}.png")
    for k in (0, 1, 2):  # train photographs also in test, as TIFF (other bytes, same pixels)
        synthetic_fundus(k).save(src / "test" / "images" / f"copy{k:03d}.tif", compression="tiff_lzw")
    synthetic_fundus(3).save(src / "training" / "images" / "img003.tif")  # and one twice in train
    r = prepare(src, tmp_path / "out", size=32)
    rejects = dict(r.rejects)
    # split folders are read in name order (test, training): the test copies are kept first
    for k in (0, 1, 2):
        assert rejects[f"training/images/img{k:03d}.png"] == f"duplicate of test/images/copy{k:03d}.tif (same content)"
    assert rejects["training/images/img003.tif"] == "duplicate of training/images/img003.png (same content)"
    assert len(rejects) == 4 and sum(r.counts.values()) == 9
    rows = id_source_split_rows(tmp_path / "out")
    assert len({row["source"] for row in rows}) == len(rows) == 9


# ---- finding 10: formula injection in rejects.csv -----------------------------------------------

@pytest.mark.bad_input
def test_file_names_that_start_a_formula_are_neutralised_in_rejects_csv(tmp_path):
    import csv

    src = synthetic_fundus_folder(tmp_path / "src", n=3)
    names = ["=HYPERLINK(1).png", "+cmd.png", "-2+3.png", "@SUM(1).png", "\tx.png"]
    for n in names:
        (src / n).write_bytes(b"not an image")
    r = prepare(src, tmp_path / "out", size=32)
    with (tmp_path / "out" / "rejects.csv").open(newline="") as f:
        cells = [row["file"] for row in csv.DictReader(f)]
    assert sorted(cells) == sorted("'" + n for n in names)
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)
    assert sorted(f for f, _ in r.rejects) == sorted(names)  # the names themselves, as returned
    again = prepare(src, tmp_path / "out", size=32)  # unchanged: read back from rejects.csv
    assert not again.changed and again.rejects == r.rejects


# ---- s3:// output ----------------------------------------------------------------------------

def test_prepare_to_s3_writes_the_same_dataset_manifest_last(s3, drive_dir, tmp_path):
    from ablate import storage

    src = drive_folder_with_a_copy_and_a_broken_file(drive_dir, tmp_path / "src")
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
