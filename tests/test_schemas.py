"""The pydantic models of the JSON files ablate reads back (ablate/schemas.py, the manifest in
ablate/data/dataset.py): one line naming the key path, strict types, other keys kept, and each
model serving its writer too. The files' own tests (read through the CLI and the report) are in
test_validation.py. No test here starts Ray or reads a photograph."""

from __future__ import annotations

import json

import pytest

from ablate.data.dataset import Manifest
from ablate.schemas import GridRecord, Notes, problem

SHA = "0" * 64


def _manifest(**changes) -> dict:
    m = {"format_version": 1, "image_size": 32, "counts": {"train": 2, "val": 0, "test": 1},
         "shards": [{"file": "train-00000.parquet", "split": "train", "rows": 2, "sha256": SHA},
                    {"file": "test-00000.parquet", "split": "test", "rows": 1, "sha256": SHA}],
         "source": "/src", "rejected": 0, "preprocessing": {"seed": 0}}
    return {**m, **changes}


@pytest.mark.parametrize("value,model,message", [
    (None, Notes, "top level is null, expected an object"),
    ({"images": True}, Notes, "images is true or false, expected an integer >= 0"),  # JSON true is no count
    ({"test_images": 2.0}, Notes, "test_images is a number, expected an integer >= 0"),
    ({"images": -1}, Notes, "images is -1, expected an integer >= 0"),
    ({"skipped": ["ok", 3]}, Notes, "skipped[1] is an integer, expected a string"),
    ({"name": "g"}, GridRecord, "trials missing"),
    ({"name": "g", "trials": {"a": 1}}, GridRecord, "trials.a is an integer, expected an object"),
    ({"name": "g", "trials": {}, "data": 5}, GridRecord, "data is an integer, expected a string"),
    ({"name": "g", "trials": {}, "questions": "q1"}, GridRecord,
     "questions is a string, expected an object or a list or null"),
    ({"name": "g", "trials": {}, "manifest_sha256": "ABC"}, GridRecord,
     "manifest_sha256 is 'ABC', expected 64 lowercase hex digits (a sha256)"),
    (_manifest(shards=[{"file": "a.parquet", "split": "dev", "rows": 0, "sha256": SHA}]), Manifest,
     "shards[0].split is 'dev', expected one of 'train', 'val', 'test'"),
    (_manifest(shards=[{"file": "a..parquet", "split": "test", "rows": 0, "sha256": SHA}]), Manifest,
     "shards[0].file is 'a..parquet', expected a .parquet file name inside the dataset folder (no '/' or '..')"),
    (_manifest(counts={"train": 2, "val": 0, "test": 2}), Manifest, "counts.test is 2 but its shards hold 1 rows"),
    (_manifest(labels={"grade": {"values": ["a"], "counts": {"train": {"a": 1}}, "missing": {"test": 1}}}),
     Manifest, "labels.grade: 1 images of train counted but counts.train is 2"),
    (_manifest(labels={"grade": {"values": ["b", "a"], "counts": {}, "missing": {}}}), Manifest,
     "labels.grade: values are not sorted and distinct"),
    (_manifest(labels={"grade": {"values": ["a"], "counts": {"train": {"a": 1, "z": 1}}, "missing": {"test": 1}}}),
     Manifest, "labels.grade: counts.train names ['z'], which are not among the values"),
], ids=["null", "bool_count", "float_count", "negative_count", "list_item", "grid_missing", "trial_not_object",
        "data_number", "questions_string", "sha_upper", "split_unknown", "file_dots", "counts_disagree",
        "label_counts_disagree", "label_values_unsorted", "label_value_unknown"])
def test_one_line_naming_the_key_path(value, model, message):
    assert problem(value, model) == message


def test_other_keys_are_allowed_and_kept():
    """A newer writer may add keys: read back, and written again, they stay."""
    assert problem(_manifest(written_by="ablate 9"), Manifest) is None
    m = Manifest.model_validate(_manifest(written_by="ablate 9"))
    assert json.loads(m.to_json())["written_by"] == "ablate 9"
    assert problem({"name": "g", "trials": {}, "future": [1]}, GridRecord) is None


def test_manifest_written_is_the_manifest_read():
    """The writer's text (sorted keys, indent 2) validates back into the same model."""
    m = Manifest(**_manifest())
    text = m.to_json()
    assert text == json.dumps(_manifest(), indent=2, sort_keys=True) + "\n"
    assert Manifest.model_validate_json(text) == m


def test_writers_write_only_the_keys_they_set():
    """An older grid.json without 'launched' means every trial ran: re-written, it must not gain
    an empty list. Notes of the grid's own dataset carry no 'images'."""
    old = {"name": "g", "data": None, "trials": {"a": {}}}
    assert json.loads(GridRecord.model_validate(old).to_json()) == old
    notes = Notes(segmenter="ridge", skipped=[], test_images=3, segmenter_id={"name": "ridge"})
    assert json.loads(notes.to_json()) == {"segmenter": "ridge", "skipped": [], "test_images": 3,
                                           "segmenter_id": {"name": "ridge"}}


def test_read_manifest_is_the_file_as_written(tmp_path):
    """read_manifest's dict view: the keys the file holds (unknown ones too), no default added;
    load_manifest: the model."""
    from ablate.data.shards import load_manifest, read_manifest

    raw = {k: v for k, v in _manifest(written_by="ablate 9").items() if k != "rejected"}
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    assert read_manifest(tmp_path) == raw
    assert load_manifest(tmp_path).shards[1].split == "test"
