"""Shared fixtures. Real data comes from the DRIVE copy beside the project
(../shared/data/drive); it is read in place, never copied into the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DRIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "drive"


@pytest.fixture(scope="session")
def drive_dir() -> Path:
    if not (DRIVE / "images").is_dir():
        pytest.fail(f"DRIVE data not found at {DRIVE}; the tests need ../shared/data/drive beside the project")
    return DRIVE


@pytest.fixture(scope="session")
def drive32(tmp_path_factory, drive_dir) -> Path:
    """DRIVE prepared at 32 px once per test session."""
    from ablate.data.shards import prepare

    out = tmp_path_factory.mktemp("drive32")
    prepare(drive_dir, out, size=32)
    return out


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    """One local Ray instance for the whole session (start-up costs seconds)."""
    import ray

    tmp = os.path.join("/tmp", f"ablate-test-ray-{os.getpid()}")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tmp, log_to_driver=False)
    yield ray
    ray.shutdown()
