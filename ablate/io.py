"""Atomic file writes: a killed run never leaves a half-written file behind."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`.

    The file gets the permissions a plain `open(path, "w")` would (0666 less the
    umask): tempfile.mkstemp makes 0600 files, and the rename kept that, so a shared
    group or a container user could not read what we wrote."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_beside(path)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _create_beside(path: Path) -> str:
    """Create an empty, new, uniquely named file beside `path`, mode 0666 & ~umask.

    os.open with mode 0o666 lets the kernel apply the umask (and any default ACL),
    exactly as open() does; reading the umask ourselves (os.umask twice) would briefly
    set it to 0 for every other thread of the process."""
    for _ in range(100):
        tmp = os.path.join(path.parent, f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"{path.parent}: could not create a temporary file for {path.name} (100 names taken)")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def sha256_stream(stream: BinaryIO) -> str:
    """The hex sha256 of what is left to read in a binary stream, read 1 MiB at a time (a
    multi-GB checkpoint is never held in memory). The one hashing loop: local files, object
    storage streams and weights all come through here."""
    h = hashlib.sha256()
    for block in iter(lambda: stream.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a local file."""
    with open(path, "rb") as f:
        return sha256_stream(f)
