"""What an input file must pass before anything decodes it.

A folder of "fundus photographs" may hold anything: a FIFO (opening it blocks
forever), a dangling or looping symlink, a 3 GB file, a 200-byte PNG whose header
claims 40000x40000 pixels (a decompression bomb: 4.8 GB once decoded). Each is
turned into a `RejectedImage` with a reason for rejects.csv, decided from stat()
and the image header, so the good images of the same folder are still prepared.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ablate.errors import AblateError

# The largest fundus cameras give 16-24 MP (Canon CR-2 with an EOS body, Topcon with a
# Nikon D7200), ultra-widefield Optos about 16 MP; a research rig on a 50 MP full-frame
# body is the extreme. 60 MP leaves room for all of them while keeping one decoded
# image near 180 MB (RGB uint8) and its preprocessing copies well under a few GB.
DEFAULT_MAX_PIXELS = 60_000_000
# A file holds at most 8 bytes a pixel when uncompressed (16-bit RGBA TIFF), plus
# metadata; anything larger than that for the pixel cap cannot be a photograph we keep.
BYTES_PER_PIXEL = 8
METADATA_BYTES = 16 << 20
# A fundus photograph is near-square (the eye is round; 4:3 and 3:2 camera frames, 16:9 at
# the widest). Preprocessing pads the field of view to a square, so a 200000x64 image under
# the pixel cap would take 200000x200000 pixels padded (issue 25: 112 GiB). Beyond 2:1 it
# is refused from its header; within it, the padded square is at most twice the cap.
MAX_ASPECT = 2.0


class RejectedImage(AblateError, ValueError):
    """This file cannot be used; the message says why (it goes to rejects.csv)."""


class TooManyPixels(RejectedImage):
    """The header claims more pixels than allowed; nothing was decoded."""


def byte_cap(max_pixels: int) -> int:
    return BYTES_PER_PIXEL * max_pixels + METADATA_BYTES


def check_aspect(w: int, h: int) -> None:
    """Refuse, from the header, an image far from square (see MAX_ASPECT)."""
    if min(w, h) <= 0:
        raise RejectedImage(f"empty image ({w}x{h})")
    ratio = max(w, h) / min(w, h)
    if ratio > MAX_ASPECT:
        side = max(w, h)
        raise RejectedImage(f"aspect ratio {ratio:.1f}:1 ({w}x{h}): a fundus photograph is near-square, at most "
                            f"{MAX_ASPECT:g}:1 is accepted (padded to a square it would be {side}x{side} = "
                            f"{side * side / 1e6:.0f} MP); not decoded")


def check_padded(side: int, max_pixels: int) -> None:
    """Refuse a field of view whose square (what preprocessing allocates) exceeds the cap."""
    if side * side > max_pixels:
        raise RejectedImage(f"field of view padded to a square would be {side}x{side} = {side * side / 1e6:.1f} MP, "
                            f"over the cap of {max_pixels / 1e6:g} MP (see --max-pixels); not preprocessed")


def check_max_pixels(max_pixels: int) -> None:
    """Pillow's own guard warns above Image.MAX_IMAGE_PIXELS and we turn that warning
    into a reject, so a cap above it would promise images we would still refuse."""
    limit = Image.MAX_IMAGE_PIXELS
    if max_pixels < 1:
        raise ValueError(f"--max-pixels {max_pixels}: must be at least 1")
    if limit is not None and max_pixels > limit:
        raise ValueError(f"--max-pixels {max_pixels}: above Pillow's decompression-bomb limit ({limit} pixels), "
                         "which refuses such images anyway")


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def _stat(path: Path) -> os.stat_result:
    """stat() following links, with dangling links and loops named as such."""
    try:
        return os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RejectedImage("symlink loop (following the link never reaches a file)") from None
        if e.errno == errno.ENOENT and os.path.islink(path):
            raise RejectedImage(f"dangling symlink (target {os.readlink(path)} does not exist)") from None
        raise RejectedImage(f"cannot read file ({e.strerror or e})") from None


def _check_regular(st: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise RejectedImage(f"not a regular file ({_kind(st.st_mode)})")
    if st.st_size > max_bytes:
        raise RejectedImage(f"file too large ({st.st_size / 1e6:.0f} MB; at most {max_bytes / 1e6:.0f} MB "
                            "for the pixel cap, see --max-pixels); not read")


def read_once(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, read once, after stat() says it is a regular file of at most
    `max_bytes`. Never opens a FIFO, socket or device (opening a FIFO blocks)."""
    _check_regular(_stat(path), max_bytes)
    try:
        # O_NONBLOCK: should a FIFO replace the file after the stat, open() returns
        # instead of waiting for a writer, and fstat below rejects it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise RejectedImage(f"cannot read file ({e.strerror or e})") from None
    try:
        _check_regular(os.fstat(fd), max_bytes)
        chunks, total = [], 0
        while total <= max_bytes:
            block = os.read(fd, 1 << 20)
            if not block:
                break
            chunks.append(block)
            total += len(block)
    except OSError as e:
        raise RejectedImage(f"cannot read file ({e.strerror or e})") from None
    finally:
        os.close(fd)
    if total > max_bytes:  # it grew while we read it
        raise RejectedImage(f"file too large (over {max_bytes / 1e6:.0f} MB while being read)")
    return b"".join(chunks)


def open_header(data: bytes, max_pixels: int) -> Image.Image:
    """The image opened from its header only (Pillow decodes nothing before load()),
    refused when it claims more than `max_pixels` pixels."""
    with warnings.catch_warnings():
        # Pillow warns (above MAX_IMAGE_PIXELS) or raises (above twice that) at open:
        # both mean a bomb candidate, and a warning must not let it through.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise TooManyPixels(f"too many pixels, not decoded (decompression bomb guard: {e})") from None
        except UnidentifiedImageError:
            raise RejectedImage("not a readable image") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise RejectedImage(f"corrupt or truncated image ({e})") from None
    w, h = im.size
    if w * h > max_pixels:
        raise TooManyPixels(f"too many pixels ({w}x{h} = {w * h / 1e6:.1f} MP; the cap is "
                            f"{max_pixels / 1e6:g} MP, see --max-pixels); not decoded")
    try:
        frames = getattr(im, "n_frames", 1)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise RejectedImage(f"corrupt or truncated image ({e})") from None
    if frames > 1:
        # Which page is the photograph (a stack of exposures, a thumbnail, a second eye)
        # is not ours to guess: judging page 0 alone went unseen (issue 25).
        raise RejectedImage(f"{frames} pages/frames in one file (a multi-page TIFF or an animation); one "
                            "photograph per file is needed: split it (e.g. tiffsplit) and prepare the pages")
    return im
