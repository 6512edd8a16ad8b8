"""The work folder of an interrupted prepare (ablate.data.work): a killed prepare resumes to the same dataset; results of other settings are ignored."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ablate.data.shards import prepare
from tests.helpers.images import SIX_DRIVE_STEMS, drive_folder_with_a_copy_and_a_broken_file
from tests.helpers.prepared import file_bytes_by_name

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

    src = drive_folder_with_a_copy_and_a_broken_file(drive_dir, tmp_path / "src")
    ref = prepare(src, tmp_path / "ref", size=32, rows_per_shard=2)
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-c", KILLED, str(src), str(out)], check=False, capture_output=True, text=True,
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
    assert file_bytes_by_name(out) == file_bytes_by_name(tmp_path / "ref512")
    assert ref.counts == ref512.counts
    assert not (tmp_path / "out.work").exists()


def test_resume_ignores_results_of_other_settings(drive_dir, tmp_path):
    src = drive_folder_with_a_copy_and_a_broken_file(drive_dir, tmp_path / "src", SIX_DRIVE_STEMS[:2])
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
    assert file_bytes_by_name(tmp_path / "a") == file_bytes_by_name(tmp_path / "b")
