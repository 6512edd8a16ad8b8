"""The per-image work of prepare (ablate.data.prepare_tasks): the same bytes in process and through Ray, Ray started only through the shared loopback start, a MemoryError one file's reject."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ablate.data import prepare_tasks
from ablate.data.shards import prepare, read_manifest


def fundus(seed: int, size: tuple[int, int] = (96, 96)) -> Image.Image:
    """A bright disc on black (the red-channel threshold finds it), textured by `seed`."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - h / 2) ** 2 / (h / 2.2) ** 2 + (xx - w / 2) ** 2 / (w / 2.2) ** 2 < 1
    rgb = rng.integers(60, 255, (h, w, 3), dtype=np.uint8)
    rgb[..., 0] = np.maximum(rgb[..., 0], 150)
    return Image.fromarray(np.where(disc[..., None], rgb, 0).astype(np.uint8))


def make_src(folder, n: int = 3, start: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(start, start + n):
        fundus(k).save(folder / f"img{k:03d}.png")
    return folder


@pytest.mark.fault
def test_memory_error_on_one_file_is_its_reject_not_a_crash(tmp_path, monkeypatch):
    from ablate.data import prepare_tasks

    src = make_src(tmp_path / "src", n=3)
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

    assert not ray.is_initialized()
    seen = []

    class Stop(Exception):
        pass

    def fake_init(**kw):  # record how Ray would be started, and start nothing
        seen.append((kw, os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")))
        raise Stop

    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray_output, "quiet_driver", lambda: None)
    src = make_src(tmp_path / "src", n=1)
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


STEMS = ("01_test", "02_test", "03_test", "04_test", "05_test", "21_training")


def _src(drive_dir: Path, folder: Path, stems=STEMS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        shutil.copy(drive_dir / "images" / f"{stem}.tif", folder / f"{stem}.tif")
    shutil.copy(drive_dir / "images" / "01_test.tif", folder / "zz_copy.tif")  # a duplicate
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


# ---- determinism -----------------------------------------------------------------------------

@pytest.mark.ray
def test_same_bytes_on_one_cpu_in_process_and_through_ray_on_one_and_two_cpus(ray_local, drive_dir, tmp_path, monkeypatch):
    src = _src(drive_dir, tmp_path / "src")
    calls = []
    real = prepare_tasks.process
    monkeypatch.setattr(prepare_tasks, "process", lambda job, s: calls.append(job.index) or real(job, s))
    one = prepare(src, tmp_path / "one", size=32, rows_per_shard=2, cpus=1)
    assert len(calls) == len(STEMS) + 2  # ran here, in this process
    calls.clear()
    # in_process_below=0: through Ray tasks even for 8 files (workers run the real
    # `process`, so the spy above sees nothing); two at a time finish in any order.
    two = prepare(src, tmp_path / "two", size=32, rows_per_shard=2, cpus=2, in_process_below=0)
    ray1 = prepare(src, tmp_path / "ray1", size=32, rows_per_shard=2, cpus=1, in_process_below=0)
    assert calls == []
    assert one.counts == two.counts == ray1.counts and sum(one.counts.values()) == len(STEMS)
    assert len(read_manifest(tmp_path / "one")["shards"]) >= 3
    assert _files(tmp_path / "one") == _files(tmp_path / "two") == _files(tmp_path / "ray1")
    assert dict(one.rejects)["zz_copy.tif"] == "duplicate of 01_test.tif (same content)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "ray1", "src", "two"]  # no work folders left
