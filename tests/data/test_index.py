"""--index FILE (ablate.data.index): a split column, CSV and Parquet, a byte-order mark, latin-1 refused naming file and line, mistakes named by line, label columns carried into the shards and the manifest."""

from __future__ import annotations

import csv
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ablate.data.shards import DatasetError, prepare, read_manifest, shard_paths
from tests.helpers.images import nested_drive_folder, synthetic_fundus_folder
from tests.helpers.prepared import file_bytes_by_name

# ---- finding 7: an index written by Excel (BOM) or in latin-1 ----------------------------------

@pytest.mark.bad_input
def test_index_with_a_byte_order_mark_is_read(tmp_path):
    synthetic_fundus_folder(tmp_path / "src", n=3)
    idx = tmp_path / "src" / "files.csv"
    idx.write_bytes(b"\xef\xbb\xbfpath,split\nimg000.png,train\nimg001.png,train\nimg002.png,test\n")
    r = prepare(None, tmp_path / "out", size=32, index=idx, val_from_train=0.0)
    assert r.counts == {"train": 2, "val": 0, "test": 1} and r.rejects == []


@pytest.mark.bad_input
def test_index_and_split_csv_in_latin1_are_refused_naming_file_and_line(tmp_path):
    from ablate.cli import app

    src = synthetic_fundus_folder(tmp_path / "src", n=3)
    idx = tmp_path / "src" / "files.csv"
    idx.write_bytes(b"path\nimg000.png\nimg001.png\ncaf\xe9.png\n")
    res = CliRunner().invoke(app, ["prepare", "--index", str(idx), "--out", str(tmp_path / "out"), "--size", "32"])
    assert res.exit_code == 2, res.output
    assert f"--index {idx} line 4: not UTF-8 text (byte 0xe9); save the file as UTF-8" in res.output
    assert "Traceback" not in res.output
    idx.unlink()
    (src / "split.csv").write_bytes(b"stem,split\nimg000,train\nimg001,train\nimg002,t\xe9st\n")
    with pytest.raises(DatasetError, match=rf"{src}/split.csv line 4: not UTF-8 text"):
        prepare(src, tmp_path / "out", size=32)


# ---- --index, nested folders, big folders ------------------------------------------------------

def test_an_index_that_names_val_rows_keeps_its_split_exactly(tmp_path):
    """A study declares its validation photographs (issue 27: q2-drive holds out four); the
    seeded val_from_train draw only fills in a val split the dataset lacks, so no train row
    moves to val and the manifest records that none was drawn."""
    synthetic_fundus_folder(tmp_path / "src", n=24)
    idx = tmp_path / "src" / "files.csv"
    splits = ["train"] * 20 + ["val"] * 2 + ["test"] * 2
    idx.write_text("path,split\n" + "".join(f"img{i:03d}.png,{sp}\n" for i, sp in enumerate(splits)))
    r = prepare(None, tmp_path / "out", size=32, index=idx)  # the default val_from_train, 0.1
    assert r.counts == {"train": 20, "val": 2, "test": 2}
    m = read_manifest(tmp_path / "out")
    assert m["preprocessing"]["val_from_train"] == 0.0
    val_rows = pq.read_table(shard_paths(tmp_path / "out", "val")[0]).to_pylist()
    assert sorted(row["source"] for row in val_rows) == ["img020.png", "img021.png"]


def test_index_with_split_column_csv_and_parquet(drive_dir, tmp_path):
    from ablate.cli import app

    root = nested_drive_folder(drive_dir, tmp_path / "archive")
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
    # the index names a val row, so its split is kept exactly: no seeded val_from_train draw
    assert m["counts"] == {"train": 2, "val": 1, "test": 1} and m["source"] == str(index.resolve())
    assert m["preprocessing"]["split"] == "dataset's own" and m["preprocessing"]["split_missing"] == "skip"
    rejects = dict(csv.reader(io.StringIO((tmp_path / "out" / "rejects.csv").read_text())))
    assert rejects["2020/07/05_test.tif"] == "not listed in split.csv (--split-missing skip)"
    assert rejects["gone/06_test.tif"].startswith("cannot read file (No such file")
    assert "the index's split column does not list 1 of 6 image(s)" in res.output
    test_rows = pq.read_table(shard_paths(tmp_path / "out", "test")[0]).to_pylist()
    assert [r["source"] for r in test_rows] == ["2019/01/01_test.tif"]
    assert m["labels"]["age"] == {"values": [], "counts": {"train": {}, "val": {}, "test": {}},
                                  "missing": {"train": 2, "val": 1, "test": 1}}  # a label column left empty
    # The same index as Parquet: the same dataset.
    pq.write_table(pa.Table.from_pylist([{"path": p, "split": s or None, "age": None} for p, s in rows]),
                   root / "index.parquet")
    prepare(None, tmp_path / "pq", size=32, index=root / "index.parquet")
    assert file_bytes_by_name(tmp_path / "pq")["rejects.csv"] == file_bytes_by_name(tmp_path / "out")["rejects.csv"]
    assert {k: v for k, v in read_manifest(tmp_path / "pq").items() if k != "source"} == \
        {k: v for k, v in m.items() if k != "source"}


@pytest.mark.bad_input
def test_index_mistakes_are_refused_naming_the_line(drive_dir, tmp_path):
    root = nested_drive_folder(drive_dir, tmp_path / "archive")
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


# ---- label columns (issue 28: a prior conditioned on a label) ------------------------------------

def _labelled_index(folder, grades: list[str], devices: list[str], splits: list[str]):
    idx = folder / "files.csv"
    idx.write_text("path,grade,split,device\n" + "".join(
        f"img{i:03d}.png,{g},{sp},{d}\n" for i, (g, sp, d) in enumerate(zip(grades, splits, devices))))
    return idx


def test_label_columns_reach_the_shards_and_the_manifest_lists_their_values(tmp_path):
    from ablate.data.shards import load_manifest

    synthetic_fundus_folder(tmp_path / "src", n=6)
    grades = ["b", "a", "", "b", " c ", "a"]  # an empty cell is no label; a value is read stripped
    idx = _labelled_index(tmp_path / "src", grades, ["x"] * 6, ["train"] * 4 + ["test"] * 2)
    prepare(None, tmp_path / "out", size=32, index=idx, val_from_train=0.0)
    rows = {r["source"]: r for split in ("train", "test") for p in shard_paths(tmp_path / "out", split)
            for r in pq.read_table(p).to_pylist()}
    assert {src: (r["grade"], r["device"]) for src, r in rows.items()} == {
        "img000.png": ("b", "x"), "img001.png": ("a", "x"), "img002.png": (None, "x"), "img003.png": ("b", "x"),
        "img004.png": ("c", "x"), "img005.png": ("a", "x")}
    assert pq.read_schema(shard_paths(tmp_path / "out", "train")[0]).field("grade").type == pa.string()
    labels = load_manifest(tmp_path / "out").labels
    assert sorted(labels) == ["device", "grade"]
    assert labels["grade"].values == ["a", "b", "c"]
    assert labels["grade"].counts == {"train": {"a": 1, "b": 2}, "val": {}, "test": {"a": 1, "c": 1}}
    assert labels["grade"].missing == {"train": 1, "val": 0, "test": 0}
    assert labels["device"].values == ["x"]


def test_a_changed_label_prepares_again(tmp_path):
    """The input's fingerprint holds the labels: an index whose only change is a label is not
    taken for the dataset already written."""
    synthetic_fundus_folder(tmp_path / "src", n=3)
    idx = _labelled_index(tmp_path / "src", ["a", "a", "b"], ["x"] * 3, ["train", "train", "test"])
    prepare(None, tmp_path / "out", size=32, index=idx, val_from_train=0.0)
    _labelled_index(tmp_path / "src", ["a", "b", "b"], ["x"] * 3, ["train", "train", "test"])
    assert prepare(None, tmp_path / "out", size=32, index=idx, val_from_train=0.0).changed
    grades = [r["grade"] for r in pq.read_table(shard_paths(tmp_path / "out", "train")[0]).to_pylist()]
    assert sorted(grades) == ["a", "b"]


def test_a_dataset_without_labels_has_no_labels_key(tmp_path):
    """A folder (or an index of path and split only) gives the manifest it gave before labels
    were kept: no `labels` key, no extra shard column."""
    from ablate.data.shards import load_manifest

    synthetic_fundus_folder(tmp_path / "src", n=3)
    prepare(tmp_path / "src", tmp_path / "out", size=32)
    assert "labels" not in json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert load_manifest(tmp_path / "out").labels == {}
    assert pq.read_schema(shard_paths(tmp_path / "out", "train")[0]).names == [
        "id", "source", "split", "image", "fov", "vessel", "orig_height", "orig_width", "fov_source"]


@pytest.mark.bad_input
@pytest.mark.parametrize("header", ["path,split,source", "path,image", "path,,split"])
def test_a_label_column_the_shards_cannot_hold_is_refused_naming_file_and_column(tmp_path, header):
    synthetic_fundus_folder(tmp_path / "src", n=2)
    idx = tmp_path / "src" / "files.csv"
    cells = len(header.split(","))
    idx.write_text(header + "\n" + "".join(f"img{i:03d}.png" + ",train" * (cells - 1) + "\n" for i in range(2)))
    with pytest.raises(DatasetError) as e:
        prepare(None, tmp_path / "out", size=32, index=idx)
    name = header.split(",")[-1] if header.split(",")[-1] != "split" else ""
    said = str(e.value)
    assert said.startswith(f"--index {idx}: ")
    assert (f"column {name!r} clashes with the prepared shards' own {name!r} column" in said if name
            else "a column has no name" in said)
    assert not (tmp_path / "out").exists()
