"""Replacing a dataset whole or not at all (ablate.data.swap): a full disk, a kill or an interrupted swap keeps the previous dataset; an output folder holding foreign files is refused."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ablate.data import prepare_tasks, swap
from ablate.data.shards import DatasetError, prepare, read_manifest, shard_paths
from tests.helpers.images import THREE_DRIVE_STEMS, copy_drive_images


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


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


# ---- f3: datasets replaced atomically ---------------------------------------------------

@pytest.mark.fault
def test_disk_full_keeps_previous_dataset(drive_dir, tmp_path, monkeypatch):
    """Finding F3 (issue 20): Disk full keeps previous dataset."""

    src = copy_drive_images(drive_dir, tmp_path / "src", THREE_DRIVE_STEMS + ("04_test",))
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
def test_interrupted_swap_is_recovered_by_next_prepare(drive_dir, tmp_path):
    """Finding F3 (issue 20): A kill between the two renames (where no atomic exchange exists) leaves the previous
    dataset in <out>.old-PID and a partial <out>.new-PID: the next prepare puts the
    previous one back, removes the partial one, and says both."""
    src = copy_drive_images(drive_dir, tmp_path / "src", THREE_DRIVE_STEMS[:2])
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


@pytest.mark.fault
def test_killed_prepare_keeps_previous_dataset(drive_dir, tmp_path):
    """Finding F3 (issue 20): Killed prepare keeps previous dataset."""

    src = copy_drive_images(drive_dir, tmp_path / "src", THREE_DRIVE_STEMS)
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
def test_replace_without_atomic_exchange_leaves_no_leftovers(drive_dir, tmp_path, monkeypatch):
    """Finding F3 (issue 20): Replace without atomic exchange leaves no leftovers."""

    src = copy_drive_images(drive_dir, tmp_path / "src", THREE_DRIVE_STEMS[:2])
    out = tmp_path / "data"
    prepare(src, out, size=32)
    monkeypatch.setattr(swap, "_exchange", lambda a, b: False)  # the two-rename path
    r = prepare(src, out, size=40)
    assert r.changed and read_manifest(out)["image_size"] == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "src"]


@pytest.mark.bad_input
def test_out_with_foreign_files_is_refused(drive_dir, tmp_path):
    """Finding F3 (issue 20): Replacing the folder whole would delete a user's files kept in --out."""
    src = copy_drive_images(drive_dir, tmp_path / "src", THREE_DRIVE_STEMS[:1])
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match=r"--out .*data: holds 1 entry that is not part of a prepared dataset \(notes.txt\)"):
        prepare(src, out, size=32)
    assert _snapshot(out) == {"notes.txt": b"mine"}
