"""The per-image work of prepare (ablate.data.prepare_tasks): Ray started only through the shared
loopback start, a MemoryError one file's reject (through Ray: test_prepare_tasks_on_ray.py)."""

from __future__ import annotations

import pytest

from ablate.data.shards import prepare
from tests.helpers.images import synthetic_fundus_folder


@pytest.mark.fault
def test_memory_error_on_one_file_is_its_reject_not_a_crash(tmp_path, monkeypatch):
    from ablate.data import prepare_tasks

    src = synthetic_fundus_folder(tmp_path / "src", n=3)
    real = prepare_tasks.preprocess

    def oom_on_second(raw, size, **k):
        if raw == (src / "img001.png").read_bytes():
            raise MemoryError
        return real(raw, size, **k)

    monkeypatch.setattr(prepare_tasks, "preprocess", oom_on_second)
    r = prepare(src, tmp_path / "out", size=32)
    assert dict(r.rejects)["img001.png"].startswith("out of memory while preprocessing this file")
    assert sum(r.counts.values()) == 2


# ---- finding 11: prepare's Ray is started through the one shared, loopback-only start ------------

def test_prepare_starts_ray_only_through_the_shared_loopback_start(tmp_path, monkeypatch):
    import os

    import ray

    from ablate.data import prepare_tasks
    from ablate.runtime import cluster, ray_output

    # A Ray test before this one (they run first) may have left the session's Ray (ray_local) up
    # in this process; `ablate prepare` starts in a process without one, and so does this test.
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    seen = []

    class Stop(Exception):
        pass

    def fake_init(**kw):  # record how Ray would be started, and start nothing
        seen.append((kw, os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")))
        raise Stop

    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray_output, "quiet_driver", lambda: None)
    src = synthetic_fundus_folder(tmp_path / "src", n=1)
    job = prepare_tasks.Job(0, str(src / "img000.png"), None, None)
    try:
        with pytest.raises(Stop):
            prepare_tasks.run([job], prepare_tasks.Settings(32, 60_000_000), lambda i, r: None, cpus=1,
                              in_process_below=0)
    finally:
        cluster.cluster_mode_back()
    assert len(seen) == 1
    kw, single_machine = seen[0]
    assert kw["_node_ip_address"] == "127.0.0.1" and single_machine == "0"  # cluster.loopback_only() ran first
    assert kw["num_cpus"] == 1 and kw["include_dashboard"] is False and "dashboard_host" not in kw
