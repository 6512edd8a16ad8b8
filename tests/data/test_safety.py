"""What prepare checks before it works (ablate.data.safety): the work folder is scratch space the tool owns; an index listing mostly missing files, and a much smaller replacement, are refused."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ablate.data import prepare_run
from ablate.data.shards import DatasetError, prepare
from tests.helpers.images import synthetic_fundus_folder

# ---- finding 2: an index that lists mostly missing files; a much smaller replacement -----------

def _index(path, names):
    path.write_text("path\n" + "".join(f"{n}\n" for n in names))
    return path


# ---- finding 1: --work is scratch space the tool owns -----------------------------------------

@pytest.mark.bad_input
def test_work_folder_of_user_files_is_refused_and_kept(tmp_path):
    src = synthetic_fundus_folder(tmp_path / "src")
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

    src = synthetic_fundus_folder(tmp_path / "src")
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
    src = synthetic_fundus_folder(tmp_path / "src")
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
    src = synthetic_fundus_folder(tmp_path / "src")
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
    src = synthetic_fundus_folder(tmp_path / "src")
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


@pytest.mark.bad_input
def test_index_listing_mostly_missing_files_is_refused_before_any_work(tmp_path, monkeypatch):
    from ablate.cli import app

    synthetic_fundus_folder(tmp_path / "src", n=3)
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

    src = synthetic_fundus_folder(tmp_path / "src", n=10)
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
