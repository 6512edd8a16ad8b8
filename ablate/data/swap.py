"""Replace a dataset folder whole, or not at all.

The new dataset is written complete into a sibling folder `<out>.new-<pid>` (same
filesystem, so renames are atomic) and swapped in only then. Disk full or a kill
while writing leaves the previous dataset untouched; the partial folder is removed
(or, after a kill, by the next prepare).

The swap itself is one atomic exchange of the two folders where Linux offers it
(renameat2 RENAME_EXCHANGE): a reader sees the old dataset or the new one, never
neither. Elsewhere it is two renames (old away to `<out>.old-<pid>`, new in); a
crash between them leaves the complete previous dataset in `.old-<pid>`, which the
next prepare puts back before anything else.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def write_file(path: Path, data: bytes) -> None:
    """One file of the new dataset, on disk (fsync) before the swap can publish it."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the OS or filesystem cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not glibc >= 2.28: the two-rename path below
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _leftovers(out: Path) -> list[tuple[Path, str, int]]:
    """(path, 'new' or 'old', pid) for each sibling an earlier prepare left behind."""
    if not out.parent.is_dir():
        return []
    pattern = re.compile(re.escape(out.name) + r"\.(new|old)-(\d+)")
    found = []
    for p in sorted(out.parent.iterdir()):
        m = pattern.fullmatch(p.name)
        if m:
            found.append((p, m.group(1), int(m.group(2))))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def recover(out: Path) -> list[str]:
    """Put back a previous dataset a crash left in `<out>.old-<pid>` and remove what
    interrupted prepares left. Returns one line per action, for the user."""
    notes = []
    for path, kind, pid in _leftovers(out):
        if pid != os.getpid() and _alive(pid):
            notes.append(f"left {path} alone: process {pid}, which wrote it, is still running")
            continue
        if kind == "old" and not out.exists():
            os.rename(path, out)
            notes.append(f"restored the previous dataset from {path} into {out} "
                         f"(process {pid} was interrupted while swapping datasets)")
            continue
        shutil.rmtree(path)
        notes.append(f"removed {path}, left by an interrupted prepare (process {pid})")
    return notes


def foreign_entries(out: Path, owned: Callable[[str], bool]) -> list[str]:
    """Names in `out` that are not dataset files: replacing the folder would delete them."""
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir() if not owned(p.name))


def replace_folder(out: Path, files: Iterable[tuple[str, bytes]]) -> list[str]:
    """Make `out` hold exactly `files` (name, bytes), all or nothing.

    Raises OSError (its filename the file of the new dataset being written) with the
    previous `out` unchanged and the partial folder removed. Returns notes for the
    user about cleanup that failed after the new dataset was already in place."""
    staging = out.with_name(f"{out.name}.new-{os.getpid()}")
    if staging.exists():  # our own pid's, from a run that died before we were born
        shutil.rmtree(staging)
    os.mkdir(staging)  # 0777 less the umask, as any folder the user makes
    if out.is_dir():  # keep the mode the user gave the old folder (a group's setgid bit, say)
        os.chmod(staging, os.stat(out).st_mode & 0o7777)
    try:
        for name, data in files:
            try:
                write_file(staging / name, data)
            except OSError as e:
                raise OSError(e.errno, e.strerror, name) from e
        _fsync_dir(staging)
        previous = _swap_in(staging, out)
    except BaseException:
        # Only our partial new dataset goes; the old one is untouched. Should this
        # removal fail too, the next prepare removes the folder and says so.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(out.parent)
    return _remove_old(previous, out)


def _swap_in(staging: Path, out: Path) -> Path | None:
    """Put `staging` at `out`; returns where the previous dataset now is (None: there was none)."""
    if not out.exists():
        os.rename(staging, out)
        return None
    if _exchange(staging, out):
        return staging
    old = out.with_name(f"{out.name}.old-{os.getpid()}")
    os.rename(out, old)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(old, out)  # put the previous dataset back before reporting
        raise
    return old


def _remove_old(previous: Path | None, out: Path) -> list[str]:
    if previous is None or not previous.exists():
        return []
    failed: list[str] = []
    shutil.rmtree(previous, onerror=lambda _f, p, e: failed.append(f"{p}: {e[1]}"))
    if failed:
        return [(f"the new dataset is in {out}, but the previous one could not be deleted from {previous} "
                 f"({failed[0]}); delete it by hand")]
    return []
