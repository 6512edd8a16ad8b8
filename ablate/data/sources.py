"""Find fundus photographs and their masks in a folder, whatever its layout.

Supported:
- DRIVE as distributed here: images/, vessels/ (or 1st_manual/), fov/ (or mask/),
  with an optional split.csv (stem,split);
- DRIVE as distributed originally: training/ and test/ each holding images/,
  1st_manual/, mask/ (the split comes from the folder name);
- a plain folder of images (no masks; FOV found by thresholding), its subfolders
  included (nested archives: names in the dataset are relative paths);
- in general, any folder whose images sit in images/ (or at the top) with masks
  in sibling folders, matched by file stem.

Every entry with an image suffix is listed, whatever it is (a FIFO, a dangling
link, a folder named x.png): prepare rejects the unusable ones with a reason
instead of skipping them unseen. A split.csv is read strictly (see _read_split_csv).
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

from ablate.errors import InputMissing, InputUnreadable, NotAFolder

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif"}
VESSEL_DIRS = ("vessels", "1st_manual", "manual", "manual1", "vessel", "labels")
FOV_DIRS = ("fov", "mask", "masks", "fov_masks")
# Folder names that carry a dataset's own split, mapped to ours.
SPLIT_DIRS = {"training": "train", "train": "train", "val": "val", "validation": "val", "test": "test"}
SPLIT_NAMES = {"training": "train", "train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test"}


@dataclass(frozen=True)
class SourceItem:
    image: Path
    vessel: Path | None
    fov: Path | None
    split: str | None  # the dataset's own split, mapped to train/val/test; None when absent
    unlisted: bool = False  # a split.csv is present and does not name this image
    # (column, value) of each label column of an --index file (index.py); value None where empty
    labels: tuple[tuple[str, str | None], ...] = ()

    @property
    def name(self) -> str:
        return self.image.name


def safe_name(name: str) -> str:
    """`name` as text any file or terminal can hold: a file name's bytes that are not UTF-8
    (a latin-1 'caf\xe9.png' from an old archive; Python holds them as lone surrogates,
    which no UTF-8 writer accepts) written as backslash escapes. UTF-8 names are unchanged."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def csv_text(path: Path, what: str) -> str:
    """A CSV file's text: UTF-8, with or without the byte-order mark Excel's "CSV UTF-8"
    writes (it would otherwise become part of the first column's name). Other bytes are
    refused naming the file and line (`what` names the option or file for the user)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(f"{what} line {line}: not UTF-8 text (byte 0x{data[e.start]:02x}); save the file as "
                         "UTF-8 (Excel: 'CSV UTF-8'; iconv -f latin1 -t utf-8)") from None


def _listdir(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except PermissionError as e:
        raise InputUnreadable(f"{folder}: cannot read folder ({e.strerror})") from None


def _files(folder: Path) -> list[Path]:
    # No is_file() filter: it hides FIFOs, loops and dangling links without a word.
    # Whether an entry is readable is decided (from stat, before any open) when it is read.
    return [p for p in _listdir(folder) if p.suffix.lower() in IMAGE_SUFFIXES]


class _Masks:
    """Mask files by stem, looked up as `match` describes in O(log n): an archive's
    folder may hold tens of thousands of masks, and a scan of all of them per image
    would be quadratic."""

    def __init__(self, files: list[Path]):
        self.by_stem = {p.stem: p for p in files}
        self.sorted = sorted(self.by_stem)
        self.by_token: dict[str, list[Path]] = {}
        for s, p in self.by_stem.items():
            self.by_token.setdefault(s.split("_")[0], []).append(p)

    def match(self, stem: str) -> Path | None:
        """Exact stem; else a unique mask stem of the form '<stem>_...'; else a unique
        mask sharing the leading id token (DRIVE's '21_training' ~ '21_manual1')."""
        if stem in self.by_stem:
            return self.by_stem[stem]
        prefix = stem + "_"
        k = bisect.bisect_left(self.sorted, prefix)
        pref = list(itertools.islice(itertools.takewhile(lambda s: s.startswith(prefix), self.sorted[k:k + 2]), 2))
        if len(pref) == 1:
            return self.by_stem[pref[0]]
        token = stem.split("_")[0]
        if token and token != stem:
            same = self.by_token.get(token, [])
            if len(same) == 1:
                return same[0]
        return None


def _walk(root: Path) -> list[Path]:
    """Image-suffixed entries of `root` and, for a plain folder, of every folder below it
    (an archive's year/month/ layout); links to folders are not followed (no loops)."""
    found, stack = [], [root]
    while stack:
        folder = stack.pop()
        for p in _listdir(folder):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                found.append(p)
            elif not p.name.startswith(".") and p.is_dir() and not p.is_symlink():
                stack.append(p)
    return sorted(found)


def _stem_of(name: str) -> str:
    """'21_training.tif' -> '21_training': a common way to write the stem column."""
    suffix = Path(name).suffix
    return name[: -len(suffix)] if suffix.lower() in IMAGE_SUFFIXES else name


def _listing(names: list[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _read_split_csv(path: Path, stems: set[str]) -> dict[str, str]:
    """stem -> train/val/test. Strict, because a mistake here decides which images are
    test images: duplicates, unknown split names and stems matching none of `stems`
    (the images found) are refused, naming the lines."""
    out: dict[str, str] = {}
    line_of: dict[str, int] = {}
    duplicates, unknown = [], []
    with io.StringIO(csv_text(path, str(path)), newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"stem", "split"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected columns 'stem,split', got {reader.fieldnames}")
        for row in reader:
            line = reader.line_num
            written = (row["stem"] or "").strip()
            stem = _stem_of(written)
            if not stem:
                raise ValueError(f"{path} line {line}: empty stem")
            split = SPLIT_NAMES.get((row["split"] or "").strip().lower())
            if split is None:
                raise ValueError(f"{path} line {line}: unknown split {row['split']!r} for stem {written!r} "
                                 f"(expected one of {', '.join(sorted(SPLIT_NAMES))})")
            if stem in line_of:
                duplicates.append(f"{stem!r} (lines {line_of[stem]} and {line})")
                continue
            line_of[stem], out[stem] = line, split
            if stem not in stems:
                unknown.append(f"{written!r} (line {line})")
    if duplicates:
        raise ValueError(f"{path}: stem listed more than once: {_listing(duplicates)}; keep one row per image")
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} stem(s) match no image in {path.parent}: {_listing(unknown)}")
    if not out:
        raise ValueError(f"{path}: no rows; list every image as 'stem,split' or remove the file")
    return out


def _scan_one(root: Path, split_from_dir: str | None) -> list[SourceItem]:
    img_dir = root / "images" if (root / "images").is_dir() else root
    vdir = next((root / d for d in VESSEL_DIRS if (root / d).is_dir()), None)
    fdir = next((root / d for d in FOV_DIRS if (root / d).is_dir()), None)
    vessels = _Masks(_files(vdir) if vdir else [])
    fovs = _Masks(_files(fdir) if fdir else [])
    plain = img_dir == root and vdir is None and fdir is None
    images = _walk(root) if plain else _files(img_dir)
    has_csv = os.path.lexists(root / "split.csv")
    if has_csv and not (root / "split.csv").is_file():  # a FIFO, folder or broken link must not pass as "no split"
        raise ValueError(f"{root / 'split.csv'}: not a readable regular file")
    splits = _read_split_csv(root / "split.csv", {p.stem for p in images}) if has_csv else {}
    items = []
    for img in images:
        items.append(
            SourceItem(
                image=img,
                vessel=vessels.match(img.stem),
                fov=fovs.match(img.stem),
                split=split_from_dir or splits.get(img.stem),
                unlisted=has_csv and not split_from_dir and img.stem not in splits,
            )
        )
    return items


def scan(src: str | Path) -> list[SourceItem]:
    src = Path(src)
    if not src.exists():
        raise InputMissing(f"{src}: no such folder")
    if not src.is_dir():
        raise NotAFolder(f"{src}: not a folder")
    split_dirs = [d for d in _listdir(src) if d.is_dir() and d.name.lower() in SPLIT_DIRS]
    if split_dirs:
        items = []
        for d in split_dirs:
            items += _scan_one(d, SPLIT_DIRS[d.name.lower()])
        return items
    return _scan_one(src, None)
