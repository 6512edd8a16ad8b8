"""Everything a local command starts listens on loopback only (issue 25): every listening
socket of the process tree of `ablate launch` (mid-trial, two DDP workers), `ablate
evaluate` and `ablate prepare` (with Ray), sampled until the command ends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.network import LOOPBACK

pytestmark = pytest.mark.ray


def _listening(proc) -> tuple[list[tuple[str, str, int]], bool]:
    """(every listening socket of `proc` and its descendants as (command, ip, port), whether a
    Ray Train worker was among them), sampled every 0.3 s until `proc` exits. One system-wide
    read of the socket tables per sample (per-process reads cost a core on 2 CPUs)."""
    import psutil

    seen: set[tuple[str, str, int]] = set()
    train_worker = False
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = {p.pid: p for p in [root, *root.children(recursive=True)]}
            listening = [c for c in psutil.net_connections(kind="inet")
                         if c.status == psutil.CONN_LISTEN and c.pid in tree]
        except psutil.Error:
            break
        names: dict[int, str] = {}  # read again each sample: an idle Ray worker becomes a Train worker
        for c in listening:
            if c.pid not in names:
                try:
                    names[c.pid] = " ".join(tree[c.pid].cmdline())[:120]
                except psutil.Error:
                    continue
            train_worker |= "RayTrainWorker" in names[c.pid]
            seen.add((names[c.pid], c.laddr.ip, c.laddr.port))
        time.sleep(0.3)
    return sorted(seen), train_worker


def _run(args: list[str], tmp: Path) -> tuple[list, bool, str]:
    env = {**os.environ, "ABLATE_RAY_TMP": f"/tmp/ablate-ls-{os.getpid()}"}  # short: Ray's socket paths
    proc = subprocess.Popen([sys.executable, "-m", "ablate.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp)
    try:
        seen, train_worker = _listening(proc)
        out = proc.communicate(timeout=600)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    return seen, train_worker, out


def _exposed(seen):
    return [s for s in seen if s[1] not in LOOPBACK]


def test_launch_and_evaluate_listen_on_loopback_only(drive32, tiny_grid, tmp_path):
    exp = tmp_path / "exp"
    seen, train_worker, _ = _run(["launch", "--grid", str(tiny_grid), "--data", str(drive32), "--out", str(exp),
                                  "--only", "l1", "--workers", "2", "--steps", "12", "--no-evaluate"], tmp_path)
    assert train_worker, f"no Train worker seen listening mid-trial: the sampling missed the trial ({seen})"
    assert any("gcs_server" in s[0] for s in seen), seen
    assert not _exposed(seen), f"`ablate launch` listens beyond loopback: {_exposed(seen)}"

    seen, _, out = _run(["evaluate", str(exp), "--segmenter", "ridge"], tmp_path)
    assert "per-image metrics" in out and any("raylet" in s[0] for s in seen), seen
    assert not _exposed(seen), f"`ablate evaluate` listens beyond loopback: {_exposed(seen)}"


def test_prepare_through_ray_listens_on_loopback_only(tmp_path):
    """50 files: at the count where `prepare` hands the files to Ray tasks."""
    import numpy as np
    from PIL import Image

    from ablate.data.prepare_tasks import IN_PROCESS_BELOW

    src = tmp_path / "photos"
    src.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 30 ** 2
    for i in range(IN_PROCESS_BELOW):  # distinct fundus-like discs (duplicates would be kept once)
        img = (rng.uniform(0.2, 1.0, (64, 64, 3)) * disc[..., None] * [200, 90, 40]).astype(np.uint8)
        Image.fromarray(img).save(src / f"eye{i:03d}.png")
    seen, _, out = _run(["prepare", str(src), "--out", str(tmp_path / "prepared"), "--size", "16"], tmp_path)
    assert (tmp_path / "prepared" / "manifest.json").is_file(), out[-2000:]
    assert any("raylet" in s[0] for s in seen), f"prepare did not go through Ray: {seen}"
    assert not _exposed(seen), f"`ablate prepare` listens beyond loopback: {_exposed(seen)}"
