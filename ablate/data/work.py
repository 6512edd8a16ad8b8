"""The work folder of a prepare in progress: one checksummed result per source file,
so an interrupted prepare continues where it stopped.

`<out>.work/` beside a local --out (same disk as the dataset it will become), or
$ABLATE_CACHE/prepare-work/<hash of the URI>/ for an s3:// --out. An entry is keyed by
what decides its result without reading the file: the image's and masks' paths, sizes
and modification times (ns), the output size, the pixel cap and the code that
preprocesses; it holds the content id found when the file was read. Each entry
carries the sha256 of its payload, checked when it is used: an entry cut short by a
crash of the machine is recomputed, never trusted. The folder is removed once the
dataset is written; after a failed final write (a full disk, a refused upload) it is
kept and its size said, so the re-run after the fix decodes nothing again.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from ablate.data.dataset import DatasetError
from ablate.io import write_bytes_atomic

RESULT_SCHEMA = pa.schema([
    ("id", pa.string()), ("reject", pa.string()), ("image", pa.binary()), ("fov", pa.binary()),
    ("vessel", pa.binary()), ("orig_height", pa.int32()), ("orig_width", pa.int32()), ("fov_source", pa.string()),
])
# The code whose output an entry is: a changed preprocessing never reuses old entries.
_CODE = ("preprocess.py", "guard.py", "prepare_tasks.py")


def code_version() -> str:
    h = hashlib.sha256()
    for name in _CODE:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def work_folder(out: str, is_uri: bool) -> Path:
    if not is_uri:
        return Path(out).with_name(Path(out).name + ".work")
    # $ABLATE_CACHE as the rest of ablate reads it (backbones.weights.cache_root),
    # without importing that package here.
    root = Path(os.environ.get("ABLATE_CACHE") or Path.home() / ".cache" / "ablate").expanduser()
    return root / "prepare-work" / hashlib.sha256(out.encode()).hexdigest()[:16]


def _stamp(path: str | None) -> list | None:
    if path is None:
        return None
    st = os.stat(path)  # follows links: the file that would be read
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


class WorkCache:
    """Results of one prepare's files; `key`, `load`, `store`, and `close` (keep) or `remove`."""

    def __init__(self, folder: Path, settings: dict):
        self.folder = folder
        self.settings = json.dumps({**settings, "code": code_version()}, sort_keys=True)
        self.corrupt = 0  # entries found damaged and recomputed
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._lock = os.open(folder / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
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

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.folder)
