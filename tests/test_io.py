"""Atomic files (ablate.io): written with the user's umask, as is a prepared dataset."""

from __future__ import annotations

import os
import stat

import pytest

from ablate.data.shards import prepare
from ablate.io import write_text_atomic
from tests.helpers.images import THREE_DRIVE_STEMS, copy_drive_images

# ---- f12: the user's umask -----------------------------------------------------------------

@pytest.mark.bad_input
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_files_follow_umask(tmp_path, umask, mode):
    """Finding F12 (issue 20): Atomic files follow umask."""

    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == mode


@pytest.mark.bad_input
def test_prepared_dataset_follows_umask(drive_dir, tmp_path):
    """Finding F12 (issue 20): Prepared dataset follows umask."""

    src = copy_drive_images(drive_dir, tmp_path / "src", THREE_DRIVE_STEMS[:1])
    old = os.umask(0o027)
    try:
        prepare(src, tmp_path / "out", size=32)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o750
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()}
    assert len(modes) == 3 and set(modes.values()) == {0o640}, modes  # manifest, rejects, one shard
