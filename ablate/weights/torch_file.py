"""Is a file one torch can load at all? Checked from its first bytes and, for the zip format,
its table of contents: cheap enough to run on every file a user names before Ray starts
(a 528 MB VGG16 is not read), and enough to catch the usual mistakes (a text file, an HTML
error page saved as .pth, random bytes, a truncated download). What the tensors are is still
checked by the loader that uses the file."""

from __future__ import annotations

import os
import zipfile

# torch.save's legacy (pre-1.6) format opens with a pickled magic number, 0x1950a86a20f9469cfc6c
# (torch/serialization.py MAGIC_NUMBER), as a pickle LONG1 opcode with its 10 bytes.
_LEGACY_MAGIC = b"\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"
_ZIP_MAGIC = b"PK\x03\x04"


def torch_file_problem(path: str | os.PathLike) -> str | None:
    """None when `path` looks like a file torch.load (or torch.jit.load) reads; else what it is
    instead, in words that fit after "the file ..."."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if not head:
        return "is empty"
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as e:  # e.g. a download cut short: no central directory
            return f"is a damaged zip archive ({e})"
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return None
        return "is a zip archive but not a torch file (it holds no data.pkl)"
    if head[:1] == b"\x80" and _LEGACY_MAGIC in head:
        return None
    return "is not a torch weights file (neither torch.save's zip format nor its legacy format)"
