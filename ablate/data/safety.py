"""What `prepare` checks before it works, so that nothing the user named is lost.

- `check_work`: the work folder is scratch space the tool owns (work.py removes what
  it wrote there); it must not be, or be inside, the output or the source folder (the
  output is replaced whole; a source folder's photographs are not scratch), and the
  output must not be inside it.
- `output_lock`: one prepare at a time per output, whatever work folder each uses
  (two prepares with different --work on one --out both reported "written").
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from ablate.cache import cache_root
from ablate.data.dataset import DatasetError

log = logging.getLogger(__name__)


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_work(work: Path, out, remote: bool, src: Path | None) -> None:
    """Refuse a work folder that overlaps the output or the source folder (DatasetError naming both)."""
    w = work.resolve()
    if not remote:
        o = Path(out).resolve()
        if _within(w, o):
            raise DatasetError(f"--work {work}: {'is' if w == o else 'is inside'} --out {out}, which prepare "
                               "replaces whole; give the work folder a path of its own (default: OUT.work)")
        if _within(o, w):
            raise DatasetError(f"--out {out}: is inside --work {work}; give the work folder a path of its own "
                               "(default: OUT.work)")
    if src is not None:
        s = Path(src).resolve()
        if _within(w, s):
            raise DatasetError(f"--work {work}: {'is' if w == s else 'is inside'} the source folder {src}; "
                               "give the work folder a path outside it (default: OUT.work)")


def _lock_file(key: str) -> Path:
    # in ablate's cache, not beside the output, so no file appears next to the user's folders
    root = cache_root()
    return root / "prepare-locks" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.lock"


@contextlib.contextmanager
def output_lock(out, remote: bool) -> Iterator[None]:
    """Hold the output's lock for the whole prepare; a second prepare to the same output
    (on this machine) is refused at once, naming it."""
    key = str(out) if remote else str(Path(out).resolve())
    path = _lock_file(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise DatasetError(f"cannot create the lock file {path} for --out {out} ({e.strerror or e}); "
                           "check $ABLATE_CACHE") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetError(f"--out {out}: another prepare is writing to it (lock {path}); "
                               "wait for it to finish or stop it first") from None
        log.debug("holding %s for %s", path, out)
        yield
    finally:
        os.close(fd)  # releases the lock


# More than this fraction of an index's files missing means a wrong index or a wrong
# folder (an export listing the archive, read where a tenth of it was copied), not a few
# deleted photographs: said before any work, not found as 4,996 rejects after it.
MISSING_LIMIT = 0.5
# A new dataset keeping fewer than this fraction of the images of the one it replaces.
SHRINK_LIMIT = 0.5


def check_missing(items, index, allow: bool) -> None:
    """Refuse an index most of whose files do not exist, unless `allow` (--allow-missing)."""
    missing = [it.image for it in items if not os.path.lexists(it.image)]
    if allow or len(missing) <= MISSING_LIMIT * len(items):
        return
    shown = ", ".join(str(p) for p in missing[:3])
    raise DatasetError(f"--index {index}: {len(missing)} of the {len(items)} files it lists do not exist "
                       f"(e.g. {shown}); paths are read relative to the index's folder {Path(index).resolve().parent}. "
                       "Fix the index, or pass --allow-missing to prepare the files that exist")


def check_shrink(old: dict | None, counts: dict[str, int], out, replace: bool) -> None:
    """Refuse replacing the dataset in `out` (its manifest `old`) by one keeping under
    SHRINK_LIMIT of its images, unless `replace` (--replace)."""
    if replace or not old:
        return
    try:
        before = sum(int(n) for n in old["counts"].values())
    except (KeyError, TypeError, ValueError, AttributeError):
        return  # not a manifest this version wrote: nothing to compare with
    after = sum(counts.values())
    if before and after < SHRINK_LIMIT * before:
        raise DatasetError(f"--out {out}: holds a dataset of {before} images; this prepare would replace it with "
                           f"{after} (under {SHRINK_LIMIT:.0%} of them), so nothing was written. Check the input, "
                           "or pass --replace to replace it anyway")
