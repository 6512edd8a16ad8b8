"""Prepare through Ray (ablate.data.prepare_tasks): the same bytes in process and through Ray on one and two CPUs. Its own file: it starts Ray (the session's ray_local), which the file's neighbours must not find running."""

from __future__ import annotations

import pytest

from ablate.data import prepare_tasks
from ablate.data.shards import prepare, read_manifest
from tests.helpers.images import SIX_DRIVE_STEMS, drive_folder_with_a_copy_and_a_broken_file
from tests.helpers.prepared import file_bytes_by_name

# ---- determinism -----------------------------------------------------------------------------

@pytest.mark.ray
def test_same_bytes_on_one_cpu_in_process_and_through_ray_on_one_and_two_cpus(ray_local, drive_dir, tmp_path, monkeypatch):
    src = drive_folder_with_a_copy_and_a_broken_file(drive_dir, tmp_path / "src")
    calls = []
    real = prepare_tasks.process
    monkeypatch.setattr(prepare_tasks, "process", lambda job, s: calls.append(job.index) or real(job, s))
    one = prepare(src, tmp_path / "one", size=32, rows_per_shard=2, cpus=1)
    assert len(calls) == len(SIX_DRIVE_STEMS) + 2  # ran here, in this process
    calls.clear()
    # in_process_below=0: through Ray tasks even for 8 files (workers run the real
    # `process`, so the spy above sees nothing); two at a time finish in any order.
    two = prepare(src, tmp_path / "two", size=32, rows_per_shard=2, cpus=2, in_process_below=0)
    ray1 = prepare(src, tmp_path / "ray1", size=32, rows_per_shard=2, cpus=1, in_process_below=0)
    assert calls == []
    assert one.counts == two.counts == ray1.counts and sum(one.counts.values()) == len(SIX_DRIVE_STEMS)
    assert len(read_manifest(tmp_path / "one")["shards"]) >= 3
    assert file_bytes_by_name(tmp_path / "one") == file_bytes_by_name(tmp_path / "two") == file_bytes_by_name(tmp_path / "ray1")
    assert dict(one.rejects)["zz_copy.tif"] == "duplicate of 01_test.tif (same content)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "ray1", "src", "two"]  # no work folders left
