"""Issue 25, the prepare side: nothing the user named is ever deleted, and no input takes
a prepare down. Every source here is a few small synthetic "fundus photographs" (a bright
disc on black, its texture from a seed) made in tmp_path; each prepare runs in this
process at 32 px (well under a second)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ablate.data import prepare_run
from ablate.data.shards import DatasetError, prepare
from tests.helpers import REPO


def fundus(seed: int, size: tuple[int, int] = (96, 96)) -> Image.Image:
    """A bright disc on black (the red-channel threshold finds it), textured by `seed`."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - h / 2) ** 2 / (h / 2.2) ** 2 + (xx - w / 2) ** 2 / (w / 2.2) ** 2 < 1
    rgb = rng.integers(60, 255, (h, w, 3), dtype=np.uint8)
    rgb[..., 0] = np.maximum(rgb[..., 0], 150)
    return Image.fromarray(np.where(disc[..., None], rgb, 0).astype(np.uint8))


def make_src(folder, n: int = 3, start: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(start, start + n):
        fundus(k).save(folder / f"img{k:03d}.png")
    return folder


# ---- finding 1: --work is scratch space the tool owns -----------------------------------------

@pytest.mark.bad_input
def test_work_folder_of_user_files_is_refused_and_kept(tmp_path):
    src = make_src(tmp_path / "src")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match=r"--work .*mine: exists and is not a work folder made by ablate"):
        prepare(src, tmp_path / "out", size=32, work=mine)
    assert (mine / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "out").exists()


@pytest.mark.bad_input
def test_work_equal_to_source_folder_is_refused_and_photographs_kept(tmp_path):
    from ablate.cli import app

    src = make_src(tmp_path / "src")
    before = sorted(p.name for p in src.iterdir())
    res = CliRunner().invoke(app, ["prepare", str(src), "--out", str(tmp_path / "out"), "--size", "32",
                                   "--work", str(src)])
    assert res.exit_code == 2, res.output
    assert f"--work {src}: is the source folder {src}" in res.output
    assert "Traceback" not in res.output
    assert sorted(p.name for p in src.iterdir()) == before
    # inside the source folder: refused too (its photographs are not scratch)
    with pytest.raises(DatasetError, match="is inside the source folder"):
        prepare(src, tmp_path / "out", size=32, work=src / "w")
    assert not (src / "w").exists()


@pytest.mark.bad_input
@pytest.mark.parametrize("where", ["out", "out/w", "out-inside"])
def test_work_overlapping_out_is_refused(tmp_path, where):
    src = make_src(tmp_path / "src")
    prepare(src, tmp_path / "out", size=32)
    dataset = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    if where == "out-inside":  # --out inside --work
        work, out = tmp_path / "out", tmp_path / "out" / "sub"
        match = r"--out .*sub: is inside --work"
    else:
        work, out = tmp_path / where, tmp_path / "out"
        match = r"--work .*: is (inside )?--out"
    with pytest.raises(DatasetError, match=match):
        prepare(src, out, size=32, work=work)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == dataset


@pytest.mark.fault
def test_cleanup_removes_only_what_prepare_wrote(tmp_path, monkeypatch):
    src = make_src(tmp_path / "src")
    # an empty folder the user made: used, and left in place (empty) afterwards
    empty = tmp_path / "empty"
    empty.mkdir()
    prepare(src, tmp_path / "a", size=32, work=empty)
    assert empty.is_dir() and list(empty.iterdir()) == []
    # a folder prepare made, into which someone drops a file while it runs: the file stays
    work = tmp_path / "w"
    real = prepare_run.run

    def run_and_drop(*a, **k):
        (work / "theirs.txt").write_text("not prepare's")
        return real(*a, **k)

    monkeypatch.setattr(prepare_run, "run", run_and_drop)
    r = prepare(src, tmp_path / "b", size=32, work=work)
    assert (work / "theirs.txt").read_text() == "not prepare's"
    assert sorted(p.name for p in work.iterdir()) == ["theirs.txt"]
    assert any(f"left the work folder {work} in place" in n and "theirs.txt" in n for n in r.notes), r.notes


@pytest.mark.fault
def test_two_prepares_to_one_out_with_different_work_folders_do_not_both_succeed(tmp_path, monkeypatch):
    src = make_src(tmp_path / "src")
    out = tmp_path / "out"
    real = prepare_run.run
    second: list = []

    def run_with_a_second_prepare(*a, **k):
        if not second:
            second.append(None)
            try:
                prepare(src, out, size=32, work=tmp_path / "w2")
                second[0] = "written"
            except DatasetError as e:
                second[0] = str(e)
        return real(*a, **k)

    monkeypatch.setattr(prepare_run, "run", run_with_a_second_prepare)
    first = prepare(src, out, size=32, work=tmp_path / "w1")
    assert first.changed
    assert second[0] is not None and second[0].startswith(f"--out {out}: another prepare is writing to it"), second
    assert not (tmp_path / "w2").exists()


# ---- finding 2: an index that lists mostly missing files; a much smaller replacement -----------

def _index(path, names):
    path.write_text("path\n" + "".join(f"{n}\n" for n in names))
    return path


@pytest.mark.bad_input
def test_index_listing_mostly_missing_files_is_refused_before_any_work(tmp_path, monkeypatch):
    from ablate.cli import app

    src = make_src(tmp_path / "src", n=3)
    idx = _index(tmp_path / "src" / "files.csv", [f"img{k:03d}.png" for k in range(3)]
                 + [f"gone{k}.png" for k in range(7)])
    called = []
    monkeypatch.setattr(prepare_run, "run", lambda *a, **k: called.append(1))
    res = CliRunner().invoke(app, ["prepare", "--index", str(idx), "--out", str(tmp_path / "out"), "--size", "32"])
    assert res.exit_code == 2, res.output
    assert f"--index {idx}: 7 of the 10 files it lists do not exist" in res.output
    assert "--allow-missing" in res.output and "Traceback" not in res.output
    assert called == [] and not (tmp_path / "out").exists() and not (tmp_path / "out.work").exists()
    monkeypatch.undo()
    r = prepare(None, tmp_path / "out", size=32, index=idx, allow_missing=True)  # asked for: the rest prepared
    assert sum(r.counts.values()) == 3 and len(r.rejects) == 7


@pytest.mark.bad_input
def test_replacing_a_dataset_by_one_under_half_its_size_needs_replace(tmp_path):
    from ablate.cli import app

    src = make_src(tmp_path / "src", n=10)
    out = tmp_path / "out"
    prepare(src, out, size=32)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    idx = _index(tmp_path / "src" / "few.csv", ["img000.png", "img001.png", "img002.png", "img003.png"])
    res = CliRunner().invoke(app, ["prepare", "--index", str(idx), "--out", str(out), "--size", "32"])
    assert res.exit_code == 2, res.output
    assert f"--out {out}: holds a dataset of 10 images; this prepare would replace it with 4" in res.output
    assert "--replace" in res.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    res = CliRunner().invoke(app, ["prepare", "--index", str(idx), "--out", str(out), "--size", "32", "--replace"])
    assert res.exit_code == 0, res.output
    assert "4 images" in res.output and not (tmp_path / "out.work").exists()


# ---- finding 3: the default seeded split has exact counts, and stays put as files are added ---

def test_default_split_of_45_images_is_35_5_5(tmp_path):
    src = make_src(tmp_path / "src", n=45)
    r = prepare(src, tmp_path / "out", size=32)
    assert r.counts == {"train": 35, "val": 5, "test": 5}


def test_exact_split_counts_and_stability_under_added_images():
    from ablate.data.shard_writer import exact_split, split_counts

    ids = [f"{k:016x}" for k in range(300)]
    for n in (1, 4, 5, 9, 10, 15, 45, 99, 300):
        got = exact_split(ids[:n], 0, (0.8, 0.1))
        counts = tuple(sum(s == name for s in got.values()) for name in ("train", "val", "test"))
        assert counts == split_counts(n, (0.8, 0.1))
        want = max(int(n * 0.1 + 0.5), 1 if n >= 3 else 0)  # at least one val and test image from 3 on
        assert counts[2] == want and counts[1] == want, (n, counts)
    # adding k images moves an existing image only across a boundary the new images or the
    # new counts shift: at most k per boundary, plus how far the boundary itself moved
    for n, k in ((45, 1), (45, 5), (100, 3), (100, 50)):
        before, after = exact_split(ids[:n], 0, (0.8, 0.1)), exact_split(ids[: n + k], 0, (0.8, 0.1))
        moved = [i for i in before if before[i] != after[i]]
        (_, v0, t0), (_, v1, t1) = split_counts(n, (0.8, 0.1)), split_counts(n + k, (0.8, 0.1))
        assert len(moved) <= 2 * k + abs(t1 - t0) + abs((t1 + v1) - (t0 + v0)), (n, k, moved)
        # and never from train straight to test while test grows by no more than val shrinks
        assert not any(before[i] == "train" and after[i] == "test" for i in moved if k < n // 10)
    # the seed decides, not the order files were found in
    assert exact_split(ids[:45], 3, (0.8, 0.1)) == exact_split(ids[:45][::-1], 3, (0.8, 0.1))


# ---- finding 4: the same photograph in two formats is one image, in one split -----------------

def _rows(out):
    import pyarrow.parquet as pq

    return [r for p in sorted(out.glob("*.parquet")) for r in pq.read_table(p, columns=["id", "source", "split"]).to_pylist()]


@pytest.mark.bad_input
def test_same_photograph_as_tiff_and_png_is_kept_once_and_never_in_two_splits(tmp_path):
    src = tmp_path / "src"
    for split, stems in (("training", range(6)), ("test", range(6, 9))):
        make_src(src / split / "images", n=0)
        for k in stems:
            fundus(k).save(src / split / "images" / f"img{k:03d}.png")
    for k in (0, 1, 2):  # train photographs also in test, as TIFF (other bytes, same pixels)
        fundus(k).save(src / "test" / "images" / f"copy{k:03d}.tif", compression="tiff_lzw")
    fundus(3).save(src / "training" / "images" / "img003.tif")  # and one twice in train
    r = prepare(src, tmp_path / "out", size=32)
    rejects = dict(r.rejects)
    # split folders are read in name order (test, training): the test copies are kept first
    for k in (0, 1, 2):
        assert rejects[f"training/images/img{k:03d}.png"] == f"duplicate of test/images/copy{k:03d}.tif (same content)"
    assert rejects["training/images/img003.tif"] == "duplicate of training/images/img003.png (same content)"
    assert len(rejects) == 4 and sum(r.counts.values()) == 9
    rows = _rows(tmp_path / "out")
    assert len({row["source"] for row in rows}) == len(rows) == 9


# ---- finding 5: memory bounded before decoding; a MemoryError is one file's reject -------------

@pytest.mark.bad_input
def test_extreme_aspect_ratio_is_rejected_from_its_header_not_padded(tmp_path, monkeypatch):
    from ablate.data import preprocess as pp

    src = make_src(tmp_path / "src", n=3)
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


def np_png(w: int, h: int) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 90, 40)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.fault
def test_memory_error_on_one_file_is_its_reject_not_a_crash(tmp_path, monkeypatch):
    from ablate.data import prepare_tasks

    src = make_src(tmp_path / "src", n=3)
    real = prepare_tasks.preprocess

    def oom_on_second(raw, size, **k):
        if raw == (src / "img001.png").read_bytes():
            raise MemoryError
        return real(raw, size, **k)

    monkeypatch.setattr(prepare_tasks, "preprocess", oom_on_second)
    r = prepare(src, tmp_path / "out", size=32)
    assert dict(r.rejects)["img001.png"].startswith("out of memory while preprocessing this file")
    assert sum(r.counts.values()) == 2


# ---- finding 6: a file name that is not UTF-8 ----------------------------------------------------

@pytest.mark.bad_input
def test_latin1_file_names_are_prepared_or_rejected_under_an_escaped_name(tmp_path):
    import os

    from ablate.cli import app

    src = make_src(tmp_path / "src", n=3)
    fundus(7).save(os.fsdecode(bytes(src) + b"/caf\xe9.png"))  # a latin-1 name: not UTF-8
    with open(os.fsencode(src) + b"/=cass\xe9.png", "wb") as f:  # and a broken one
        f.write(b"not an image")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["prepare", str(src), "--out", str(out), "--size", "32"])
    assert res.exit_code == 0, res.output
    assert "5 images" not in res.output and "4 images" in res.output
    assert "caf\\xe9.png" in {row["source"] for row in _rows(out)}
    text = (out / "rejects.csv").read_bytes().decode("utf-8")  # a UTF-8 file, the name escaped
    assert "cass\\xe9.png" in text and "not a readable image" in text


# ---- finding 7: an index written by Excel (BOM) or in latin-1 ----------------------------------

@pytest.mark.bad_input
def test_index_with_a_byte_order_mark_is_read(tmp_path):
    src = make_src(tmp_path / "src", n=3)
    idx = tmp_path / "src" / "files.csv"
    idx.write_bytes(b"\xef\xbb\xbfpath,split\nimg000.png,train\nimg001.png,train\nimg002.png,test\n")
    r = prepare(None, tmp_path / "out", size=32, index=idx, val_from_train=0.0)
    assert r.counts == {"train": 2, "val": 0, "test": 1} and r.rejects == []


@pytest.mark.bad_input
def test_index_and_split_csv_in_latin1_are_refused_naming_file_and_line(tmp_path):
    from ablate.cli import app

    src = make_src(tmp_path / "src", n=3)
    idx = tmp_path / "src" / "files.csv"
    idx.write_bytes(b"path\nimg000.png\nimg001.png\ncaf\xe9.png\n")
    res = CliRunner().invoke(app, ["prepare", "--index", str(idx), "--out", str(tmp_path / "out"), "--size", "32"])
    assert res.exit_code == 2, res.output
    assert f"--index {idx} line 4: not UTF-8 text (byte 0xe9); save the file as UTF-8" in res.output
    assert "Traceback" not in res.output
    idx.unlink()
    (src / "split.csv").write_bytes(b"stem,split\nimg000,train\nimg001,train\nimg002,t\xe9st\n")
    with pytest.raises(DatasetError, match=rf"{src}/split.csv line 4: not UTF-8 text"):
        prepare(src, tmp_path / "out", size=32)


# ---- finding 8: EXIF orientation -----------------------------------------------------------------

def _upright_fundus():
    """A 96x128 (w x h) photograph with a green block in its upper half: turned, it differs."""
    arr = np.asarray(fundus(5, size=(128, 96))).copy()
    arr[30:50, 35:60] = (40, 220, 40)
    return Image.fromarray(arr)


@pytest.mark.bad_input
def test_exif_orientation_is_applied_to_image_and_masks(tmp_path):
    import io

    from ablate.data.preprocess import preprocess

    upright = _upright_fundus()
    png = io.BytesIO()
    upright.save(png, format="PNG")
    # as a camera held sideways stores it: pixels turned, EXIF orientation 6 ("rotate 90 CW to view")
    exif = Image.Exif()
    exif[0x0112] = 6
    jpg = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(jpg, format="JPEG", quality=95, exif=exif)
    fov = tmp_path / "fov.png"  # the field of view, drawn on the upright picture
    Image.fromarray((np.asarray(upright).max(axis=2) > 0).astype(np.uint8) * 255).save(fov)
    want = preprocess(png.getvalue(), 32, fov=fov).image.astype(int)
    got = preprocess(jpg.getvalue(), 32, fov=fov).image.astype(int)  # before: "mask fov.png is 96x128, image is 128x96"
    assert np.abs(got - want).mean() < 4
    turned = preprocess(jpg.getvalue(), 32).image.astype(int)  # FOV by threshold: upright as well
    assert np.abs(turned - want).mean() < 4
    assert np.abs(np.rot90(want, 1) - want).mean() > 10  # the comparison can tell a turned picture


# ---- finding 9: multi-page files -------------------------------------------------------------------

@pytest.mark.bad_input
def test_multi_page_tiff_is_rejected_with_a_reason(tmp_path):
    src = make_src(tmp_path / "src", n=3)
    fundus(11).save(src / "stack.tif", save_all=True, append_images=[fundus(12), fundus(13)])
    fundus(14).save(src / "anim.gif", save_all=True, append_images=[fundus(15)])
    r = prepare(src, tmp_path / "out", size=32)
    rejects = dict(r.rejects)
    assert rejects["stack.tif"].startswith("3 pages/frames in one file (a multi-page TIFF or an animation)")
    assert rejects["anim.gif"].startswith("2 pages/frames in one file")
    assert sum(r.counts.values()) == 3


# ---- finding 10: formula injection in rejects.csv -----------------------------------------------

@pytest.mark.bad_input
def test_file_names_that_start_a_formula_are_neutralised_in_rejects_csv(tmp_path):
    import csv

    src = make_src(tmp_path / "src", n=3)
    names = ["=HYPERLINK(1).png", "+cmd.png", "-2+3.png", "@SUM(1).png", "\tx.png"]
    for n in names:
        (src / n).write_bytes(b"not an image")
    r = prepare(src, tmp_path / "out", size=32)
    with (tmp_path / "out" / "rejects.csv").open(newline="") as f:
        cells = [row["file"] for row in csv.DictReader(f)]
    assert sorted(cells) == sorted("'" + n for n in names)
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)
    assert sorted(f for f, _ in r.rejects) == sorted(names)  # the names themselves, as returned
    again = prepare(src, tmp_path / "out", size=32)  # unchanged: read back from rejects.csv
    assert not again.changed and again.rejects == r.rejects


# ---- finding 11: prepare's Ray is started through the one shared, loopback-only start ------------

def test_prepare_starts_ray_only_through_the_shared_loopback_start(tmp_path, monkeypatch):
    import os

    import ray

    from ablate.data import prepare_tasks
    from ablate.runtime import cluster, ray_output

    assert not ray.is_initialized()
    seen = []

    class Stop(Exception):
        pass

    def fake_init(**kw):  # record how Ray would be started, and start nothing
        seen.append((kw, os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")))
        raise Stop

    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray_output, "quiet_driver", lambda: None)
    src = make_src(tmp_path / "src", n=1)
    job = prepare_tasks.Job(0, str(src / "img000.png"), None, None)
    try:
        with pytest.raises(Stop):
            prepare_tasks.run([job], prepare_tasks.Settings(32, 60_000_000), lambda i, r: None, cpus=1,
                              in_process_below=0)
    finally:
        cluster.cluster_mode_back()
    assert len(seen) == 1
    kw, single_machine = seen[0]
    assert kw["_node_ip_address"] == "127.0.0.1" and single_machine == "0"  # cluster.loopback_only() ran first
    assert kw["num_cpus"] == 1 and kw["include_dashboard"] is False and "dashboard_host" not in kw


# ---- finding 12: the README says what happens to a file that fails its hash --------------------

@pytest.mark.bad_input
def test_a_file_failing_its_hash_is_refused_and_kept_as_the_readme_says(tmp_path):

    from ablate.weights.table import WeightsHashMismatch, entry, verify_file

    bad = tmp_path / "vgg16-397923af.pth"
    bad.write_bytes(b"not the weights")
    with pytest.raises(WeightsHashMismatch, match=rf"vgg16: {bad} has sha256 .* Delete it, then"):
        verify_file(entry("vgg16"), bad)
    assert bad.read_bytes() == b"not the weights"  # refused and named, not deleted
    readme = (REPO / "README.md").read_text()
    assert "refused, named, and deleted" not in readme
    assert "a file already there (the cache's, or yours through\nthe environment variable) is left in place" in readme
