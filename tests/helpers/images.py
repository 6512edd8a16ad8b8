"""Source folders for `prepare` and the data tests: synthetic fundus photographs (no DRIVE
needed) and folders of DRIVE photographs copied from the shared copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

# Three DRIVE test photographs: the smallest folder that has more than one image per split.
THREE_DRIVE_STEMS = ("01_test", "02_test", "03_test")
# Six DRIVE photographs, five test and one training: enough for a validation split from train.
SIX_DRIVE_STEMS = ("01_test", "02_test", "03_test", "04_test", "05_test", "21_training")


def synthetic_fundus(seed: int, size: tuple[int, int] = (96, 96)) -> Image.Image:
    """A bright disc on black (the red-channel threshold finds it), textured by `seed`.

    Args:
        seed: seeds the texture; the same seed gives the same pixels.
        size: (height, width) in pixels.
    """
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - h / 2) ** 2 / (h / 2.2) ** 2 + (xx - w / 2) ** 2 / (w / 2.2) ** 2 < 1
    rgb = rng.integers(60, 255, (h, w, 3), dtype=np.uint8)
    rgb[..., 0] = np.maximum(rgb[..., 0], 150)
    return Image.fromarray(np.where(disc[..., None], rgb, 0).astype(np.uint8))


def synthetic_fundus_folder(folder: Path, n: int = 3, start: int = 0) -> Path:
    """`folder` (created) holding img{k:03d}.png, synthetic_fundus(k), for k in start..start+n-1.

    Args:
        folder: where the photographs go.
        n: how many.
        start: the first seed (and file number).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(start, start + n):
        synthetic_fundus(k).save(folder / f"img{k:03d}.png")
    return folder


def copy_drive_images(drive_dir: Path, folder: Path, stems=THREE_DRIVE_STEMS) -> Path:
    """`folder` (created) holding copies of DRIVE's images/<stem>.tif.

    Args:
        drive_dir: the DRIVE copy (conftest's `drive_dir`).
        folder: where the copies go.
        stems: which photographs.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        shutil.copy(drive_dir / "images" / f"{stem}.tif", folder / f"{stem}.tif")
    return folder


def drive_folder_with_a_copy_and_a_broken_file(drive_dir: Path, folder: Path, stems=SIX_DRIVE_STEMS) -> Path:
    """copy_drive_images plus zz_copy.tif (the same bytes as 01_test.tif: a duplicate) and
    broken.png (not an image): a source with one of each thing `prepare` drops.

    Args:
        drive_dir: the DRIVE copy (conftest's `drive_dir`).
        folder: where the files go.
        stems: which photographs.
    """
    copy_drive_images(drive_dir, folder, stems)
    shutil.copy(drive_dir / "images" / "01_test.tif", folder / "zz_copy.tif")  # a duplicate
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def nested_drive_folder(drive_dir: Path, root: Path) -> Path:
    """SIX_DRIVE_STEMS spread over sub-folders of `root` (2019/01, 2019/02, 2020/07, misc), as
    an archive sorted by date would hold them.

    Args:
        drive_dir: the DRIVE copy (conftest's `drive_dir`).
        root: the top folder (created).
    """
    for stem, sub in zip(SIX_DRIVE_STEMS, ("2019/01", "2019/01", "2019/02", "2020/07", "2020/07", "misc")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(drive_dir / "images" / f"{stem}.tif", root / sub / f"{stem}.tif")
    return root
