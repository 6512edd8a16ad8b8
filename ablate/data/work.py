"""The work folder of a prepare in progress: one checksummed result per source file,
so an interrupted prepare continues where it stopped.

`<out>.work/` beside a local --out (same disk as the dataset it will become), or
$ABLATE_CACHE/prepare-work/<hash of the URI>/ for an s3:// --out. An entry is keyed by
what decides its result without reading the file: the image's and masks' paths, sizes
and modification times (ns), the output size, the pixel cap and the code that
preprocesses; it holds the content id found when the file was read. Each entry
carries the sha256 of its payload, checked when it is used: an entry cut short by a
crash of the machine is recomputed, never trusted. Once the dataset is written the
entries are removed; after a failed final write (a full disk, a refused upload) they
are kept and their size said, so the re-run after the fix decodes nothing again.

The folder is the tool's own scratch space, never a folder of the user's (issue 25:
`--work` naming a folder of photographs had it deleted whole). Created, it gets a
marker file; an existing folder without the marker is refused unless it is empty
(then used, and left in place afterwards). Cleaning up removes only what a prepare
writes there (its entries, lock and marker) and the folder only if it made it and it
is then empty: nothing is ever removed recursively.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
from pathlib import Path

import pyarrow as pa
from pyarrow import ipc

from ablate.cache import cache_root
from ablate.data.dataset import DatasetError
from ablate.io import write_bytes_atomic

RESULT_SCHEMA = pa.schema([
    ("id", pa.string()), ("reject", pa.string()), ("image", pa.binary()), ("fov", pa.binary()),
    ("vessel", pa.binary()), ("orig_height", pa.int32()), ("orig_width", pa.int32()), ("fov_source", pa.string()),
    ("pixels", pa.string()),  # sha256 of the preprocessed image's pixels: duplicates are found by it
    # The soft vessel reference and what the binary one lost against it (soft_reference.py).
    ("vessel_soft", pa.binary()), ("vessel_area_lost", pa.float64()), ("vessel_length_lost", pa.float64()),
])
# The code whose output an entry is: a changed preprocessing never reuses old entries.
_CODE = ("preprocess.py", "guard.py", "prepare_tasks.py", "soft_reference.py")


def code_version() -> str:
    h = hashlib.sha256()
    for name in _CODE:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def work_folder(out: str, is_uri: bool) -> Path:
    if not is_uri:
        return Path(out).with_name(Path(out).name + ".work")
    root = cache_root()
    return root / "prepare-work" / hashlib.sha256(out.encode()).hexdigest()[:16]


MARKER = "ablate-prepare-work.json"  # says the folder is a prepare's work folder, and whether it made it
LOCK = "lock"
_ENTRY_DIR = re.compile(r"[0-9a-f]{2}")
# An entry, or write_bytes_atomic's temporary file of one (left by a kill mid-write).
_ENTRY = re.compile(r"\.?[0-9a-f]{32}\.result(\.[0-9a-f]+\.tmp)?")


def _ours(folder: Path) -> bool:
    """Whether every entry of `folder` is one a prepare writes (a work folder of an
    ablate from before the marker: its results are worth resuming from)."""
    for p in folder.iterdir():
        if p.name == LOCK and p.is_file() and not p.is_symlink():
            continue
        if not (_ENTRY_DIR.fullmatch(p.name) and p.is_dir() and not p.is_symlink()):
            return False
        if not all(_ENTRY.fullmatch(q.name) and q.is_file() and not q.is_symlink() for q in p.iterdir()):
            return False
    return True


def claim(folder: Path, default: bool) -> bool:
    """Make `folder` a work folder, or refuse it (DatasetError naming it). Returns whether
    ablate made the folder (then it may remove it once empty).

    `default`: the folder is the one ablate chose (OUT.work), not one the user typed: a
    work folder left there by an older ablate (no marker, nothing but entries) is reused."""
    marker = folder / MARKER
    what = f"the work folder {folder} (OUT.work)" if default else f"--work {folder}"
    try:
        if folder.exists() and not folder.is_dir():
            raise DatasetError(f"{what}: exists and is not a folder; give --work a path that does not exist yet "
                               "(prepare creates it)")
        if marker.is_file():
            return _made_folder(marker)
        if not folder.exists():
            folder.mkdir(parents=True)
            made = True
        elif not any(folder.iterdir()):
            made = False  # an empty folder the user made: used, and left in place
        elif default and _ours(folder):
            made = True
        else:
            raise DatasetError(
                f"{what}: exists and is not a work folder made by ablate prepare (no {MARKER} in it); "
                "prepare removes what it writes there when done, so give --work a path that does not exist yet "
                "or an empty folder")
        marker.write_text(json.dumps({"made_folder": made}) + "\n")
        return made
    except OSError as e:
        raise DatasetError(f"cannot create the work folder {folder} ({e.strerror or e})") from None


def _made_folder(marker: Path) -> bool:
    try:
        return json.loads(marker.read_text()).get("made_folder") is True
    except (ValueError, AttributeError):  # a damaged marker: still ours, but the folder is left in place
        return False


def _stamp(path: str | None) -> list | None:
    if path is None:
        return None
    st = os.stat(path)  # follows links: the file that would be read
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


class WorkCache:
    """Results of one prepare's files; `key`, `load`, `store`, and `close` (keep) or `remove`."""

    def __init__(self, folder: Path, settings: dict, default: bool = False):
        self.folder = folder
        self.settings = json.dumps({**settings, "code": code_version()}, sort_keys=True)
        self.corrupt = 0  # entries found damaged and recomputed
        self.made_folder = claim(folder, default)
        try:
            self._lock: int | None = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise DatasetError(f"cannot create the work folder {folder} ({e.strerror or e})") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise DatasetError(f"{folder}: another prepare to the same output is running; "
                               "wait for it or stop it first") from None

    def key(self, image: str, fov: str | None, vessel: str | None) -> str | None:
        """None for a file stat() cannot describe (dangling link, gone): not cached, and
        its reject is found again at once."""
        try:
            parts = [_stamp(image), _stamp(fov), _stamp(vessel)]
        except OSError:
            return None
        if not os.path.isfile(image):
            return None
        return hashlib.sha256(json.dumps([self.settings, parts]).encode()).hexdigest()[:32]

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.result"

    def has(self, key: str) -> bool:
        return self._path(key).is_file()

    def load(self, key: str) -> dict | None:
        """The stored result, or None when absent or damaged (then removed)."""
        p = self._path(key)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            return None
        digest, payload = data[:64], data[65:]
        if len(data) < 66 or hashlib.sha256(payload).hexdigest().encode() != digest:
            self.corrupt += 1
            p.unlink(missing_ok=True)
            return None
        return ipc.open_stream(io.BytesIO(payload)).read_all().to_pylist()[0]

    def store(self, key: str, rec: dict) -> None:
        buf = io.BytesIO()
        with ipc.new_stream(buf, RESULT_SCHEMA) as w:
            w.write_table(pa.Table.from_pylist([rec], schema=RESULT_SCHEMA))
        payload = buf.getvalue()
        try:
            write_bytes_atomic(self._path(key), hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
        except OSError as e:
            raise DatasetError(f"cannot save a result in the work folder {self.folder} ({e.strerror or e}); "
                               "the results saved so far are kept: re-run prepare to continue") from None

    def close(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None

    def remove(self) -> list[str]:
        """Remove what prepare wrote here, and the folder itself when ablate made it and
        nothing else is in it. Never recursive: a file the tool did not write stays, and
        the returned line says so."""
        self.close()
        for sub in self.folder.iterdir():
            if _ENTRY_DIR.fullmatch(sub.name) and sub.is_dir() and not sub.is_symlink():
                for p in sub.iterdir():
                    if _ENTRY.fullmatch(p.name) and p.is_file() and not p.is_symlink():
                        p.unlink()
                _rmdir_if_empty(sub)
        for name in (LOCK, MARKER):
            (self.folder / name).unlink(missing_ok=True)
        if self.made_folder and not _rmdir_if_empty(self.folder):
            left = sorted(p.name for p in self.folder.iterdir())
            return [(f"left the work folder {self.folder} in place: it holds {len(left)} entr"
                     f"{'y' if len(left) == 1 else 'ies'} prepare did not write ({', '.join(left[:5])})")]
        return []


def _rmdir_if_empty(folder: Path) -> bool:
    """Remove `folder` if empty; False (and the folder kept) when something else is in it."""
    if any(folder.iterdir()):
        return False
    folder.rmdir()
    return True
