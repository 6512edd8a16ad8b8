"""What an input file must pass before anything decodes it (ablate.data.guard): decompression bombs, images over the pixel cap, huge, truncated, multi-page or extremely elongated files are rejected from their headers."""

from __future__ import annotations

import builtins
import io
import os
import struct
import zlib

import pytest
from PIL import Image, ImageFile

from ablate.data.shards import DatasetError, prepare
from tests.helpers.images import THREE_DRIVE_STEMS, copy_drive_images, synthetic_fundus, synthetic_fundus_folder
from tests.helpers.prepared import read_rejects

# ---- f4: hostile and huge images --------------------------------------------------------

def _png_claiming(width: int, height: int) -> bytes:
    """A few-hundred-byte PNG whose IHDR claims width x height RGB pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.bad_input
def test_decompression_bomb_is_rejected_and_good_images_prepared(drive_dir, tmp_path):
    """Finding F4 (issue 20): Decompression bomb is rejected and good images prepared."""

    src = copy_drive_images(drive_dir, tmp_path / "src")
    (src / "bomb.png").write_bytes(_png_claiming(40000, 40000))
    (src / "70mp.png").write_bytes(_png_claiming(10000, 7000))  # over the default cap, under Pillow's
    r = prepare(src, tmp_path / "out", size=32)
    assert sum(r.counts.values()) == 3
    rejects = read_rejects(tmp_path / "out")
    assert rejects["bomb.png"].startswith("too many pixels, not decoded (decompression bomb guard: ")
    assert rejects["70mp.png"].startswith("too many pixels (10000x7000 = 70.0 MP; the cap is 60 MP")


@pytest.mark.bad_input
def test_image_over_cap_is_rejected_from_its_header(drive_dir, tmp_path, monkeypatch):
    """Finding F4 (issue 20): DRIVE's 565x584 (330 kpx) passes a 350 kpx cap; a 600x600 image is refused undecoded."""
    src = copy_drive_images(drive_dir, tmp_path / "src", THREE_DRIVE_STEMS[:2])
    Image.open(drive_dir / "images" / "03_test.tif").resize((600, 600)).save(src / "big.png")
    decoded, real_load = [], ImageFile.ImageFile.load

    def spy_load(im):
        decoded.append(im.size)
        return real_load(im)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    r = prepare(src, tmp_path / "out", size=32, max_pixels=350_000)
    assert sum(r.counts.values()) == 2
    assert "too many pixels (600x600 = 0.4 MP; the cap is 0.35 MP" in dict(r.rejects)["big.png"]
    assert (600, 600) not in decoded and (565, 584) in decoded


@pytest.mark.bad_input
def test_huge_file_rejected_unread_and_each_file_read_once(drive_dir, tmp_path, monkeypatch):
    """Finding F4 (issue 20): Huge file rejected unread and each file read once."""

    src = copy_drive_images(drive_dir, tmp_path / "src", THREE_DRIVE_STEMS[:2])
    huge = src / "huge.png"
    with huge.open("wb") as f:
        f.truncate(3 << 30)  # 3 GB, sparse: no disk used
    opened: list[str] = []
    real_os_open, real_open = os.open, builtins.open

    def spy_os_open(path, *a, **k):
        opened.append(os.fspath(path))
        return real_os_open(path, *a, **k)

    def spy_open(path, *a, **k):
        if not isinstance(path, int):
            opened.append(os.fspath(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", spy_os_open)
    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(io, "open", spy_open)
    r = prepare(src, tmp_path / "out", size=32)
    monkeypatch.undo()
    assert sum(r.counts.values()) == 2
    assert "file too large (3221 MB" in dict(r.rejects)["huge.png"]
    assert str(huge) not in opened
    for stem in THREE_DRIVE_STEMS[:2]:
        assert opened.count(str(src / f"{stem}.tif")) == 1, opened


@pytest.mark.bad_input
def test_truncated_jpeg_and_png_are_rejected(drive_dir, tmp_path):
    """Finding F4 (issue 20): Kept behaviour: cut-off files are rejects, not crashes."""
    src = copy_drive_images(drive_dir, tmp_path / "src", THREE_DRIVE_STEMS[:1])
    im = Image.open(drive_dir / "images" / "02_test.tif")
    for fmt, name in (("JPEG", "cut.jpg"), ("PNG", "cut.png")):
        buf = io.BytesIO()
        im.save(buf, format=fmt)
        (src / name).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    r = prepare(src, tmp_path / "out", size=32)
    reasons = dict(r.rejects)
    assert sum(r.counts.values()) == 1 and set(reasons) == {"cut.jpg", "cut.png"}
    assert all("truncated" in why for why in reasons.values()), reasons


@pytest.mark.bad_input
def test_max_pixels_above_pillow_limit_is_refused(drive_dir, tmp_path):
    """Finding F4 (issue 20): Max pixels above pillow limit is refused."""

    src = copy_drive_images(drive_dir, tmp_path / "src", THREE_DRIVE_STEMS[:1])
    with pytest.raises(DatasetError, match=r"--max-pixels 1000000000: above Pillow's decompression-bomb limit"):
        prepare(src, tmp_path / "out", size=32, max_pixels=10**9)


def np_png(w: int, h: int) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 90, 40)).save(buf, format="PNG")
    return buf.getvalue()


# ---- finding 5: memory bounded before decoding; a MemoryError is one file's reject -------------

@pytest.mark.bad_input
def test_extreme_aspect_ratio_is_rejected_from_its_header_not_padded(tmp_path, monkeypatch):
    from ablate.data import preprocess as pp

    src = synthetic_fundus_folder(tmp_path / "src", n=3)
    Image.new("RGB", (200_000, 64), (200, 90, 40)).save(src / "strip.png")  # 12.8 MP, under the cap
    assert (src / "strip.png").stat().st_size < 100_000
    loads = []
    real_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda im: loads.append(im.size) or real_load(im))
    r = prepare(src, tmp_path / "out", size=32)
    reason = dict(r.rejects)["strip.png"]
    assert reason.startswith("aspect ratio 3125.0:1 (200000x64): a fundus photograph is near-square, at most 2:1")
    assert "200000x200000 = 40000 MP" in reason and "not decoded" in reason
    assert (200_000, 64) not in loads  # never decoded
    assert sum(r.counts.values()) == 3
    # within 2:1, a field of view whose square is over the cap is refused before it is allocated
    with pytest.raises(pp.RejectedImage, match=r"padded to a square would be 200x200 = 0.0 MP, over the cap"):
        pp.preprocess(np_png(200, 100), 32, max_pixels=200 * 100)


# ---- finding 9: multi-page files -------------------------------------------------------------------

@pytest.mark.bad_input
def test_multi_page_tiff_is_rejected_with_a_reason(tmp_path):
    src = synthetic_fundus_folder(tmp_path / "src", n=3)
    synthetic_fundus(11).save(src / "stack.tif", save_all=True, append_images=[synthetic_fundus(12), synthetic_fundus(13)])
    synthetic_fundus(14).save(src / "anim.gif", save_all=True, append_images=[synthetic_fundus(15)])
    r = prepare(src, tmp_path / "out", size=32)
    rejects = dict(r.rejects)
    assert rejects["stack.tif"].startswith("3 pages/frames in one file (a multi-page TIFF or an animation)")
    assert rejects["anim.gif"].startswith("2 pages/frames in one file")
    assert sum(r.counts.values()) == 3
