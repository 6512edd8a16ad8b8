"""Skipping a prepare whose input has not changed (ablate.data.unchanged): nothing read or rewritten; a changed option or damaged output prepared again."""

from __future__ import annotations

import os

import pytest

from ablate.data import prepare_tasks
from ablate.data.guard import DEFAULT_MAX_PIXELS
from ablate.data.shards import prepare, read_manifest
from ablate.io import sha256_file
from tests.helpers.images import SIX_DRIVE_STEMS, drive_folder_with_a_copy_and_a_broken_file


def _spy(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = prepare_tasks.process
    monkeypatch.setattr(prepare_tasks, "process", lambda job, s: calls.append(job.index) or real(job, s))
    return calls


def test_unchanged_rerun_reads_no_file_and_rewrites_nothing(drive_dir, tmp_path, monkeypatch):
    src = drive_folder_with_a_copy_and_a_broken_file(drive_dir, tmp_path / "src", SIX_DRIVE_STEMS[:3])
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

    src = drive_folder_with_a_copy_and_a_broken_file(drive_dir, tmp_path / "src", SIX_DRIVE_STEMS[:1])
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(unchanged, "record_path", lambda out: tmp_path / "file" / "record.json")  # not a folder
    r = prepare(src, tmp_path / "out", size=32, cpus=1)
    assert r.changed and r.notes[-1].startswith(f"could not record the input's fingerprint in {tmp_path}/file/record.json")
    assert r.notes[-1].endswith("a re-run on this unchanged input will read every file again")


@pytest.mark.parametrize("change", ["touch", "option", "shard"])
def test_a_changed_input_option_or_damaged_output_is_prepared_again(drive_dir, tmp_path, monkeypatch, change):
    src = drive_folder_with_a_copy_and_a_broken_file(drive_dir, tmp_path / "src", SIX_DRIVE_STEMS[:3])
    out = tmp_path / "out"
    first = prepare(src, out, size=32, rows_per_shard=2, cpus=1)
    calls = _spy(monkeypatch)
    cap = DEFAULT_MAX_PIXELS
    if change == "touch":  # same bytes, new modification time: read again, same dataset
        os.utime(src / f"{SIX_DRIVE_STEMS[0]}.tif", ns=(1, 1))
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
