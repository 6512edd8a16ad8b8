"""Evaluating an experiment (ablate.evaluate.run): results keyed by the dataset's identity, a split too small for a metric, a dataset smaller than the trials, arguments checked before Ray starts, wrong-shaped files named.

No test here starts Ray: `ray.init` is refused, and the evaluations that run do so through `FakeRay`, which runs each task in this process at once. The pipeline's own code (checks, stages, metrics, writing) is the real one; only the scheduling is not."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import RAY_STARTS
from tests.helpers.commands import run_cli


@pytest.mark.bad_input
def test_evaluate_names_a_wrong_shaped_grid_json(tmp_path):
    """Finding F7 (issue 20): Evaluate names a wrong shaped grid json."""

    from ablate.config import ConfigError
    from ablate.evaluate.run import EvalOptions, evaluate_experiment

    exp = tmp_path / "exp"
    exp.mkdir()
    pd.DataFrame({"trial": ["a"], "status": ["done"], "checkpoint": [None]}).to_parquet(exp / "results.parquet")
    (exp / "grid.json").write_text(json.dumps({"name": 3, "trials": []}))
    with pytest.raises(ConfigError, match="grid.json"):
        evaluate_experiment(EvalOptions(exp=str(exp)))


class _Task:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


class FakeRay:
    """ray.remote / put / get, run at once in this process (an ObjectRef is its value)."""

    @staticmethod
    def remote(*args, **kwargs):
        return _Task(args[0]) if args and callable(args[0]) else _Task

    put = staticmethod(lambda x: x)
    get = staticmethod(lambda x: x)


@pytest.fixture
def fake_ray(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", FakeRay())


def prepared(drive: Path, root: Path, test: list[str], size: int = 32, train: str = "21") -> Path:
    """DRIVE images (by number) prepared at `size`: `test` as the test split, one train image."""
    from ablate.data.shards import prepare

    root.parent.mkdir(parents=True, exist_ok=True)
    index = root.parent / f"{root.name}-index.csv"
    rows = [f"{drive}/images/{k}_test.tif,test,{drive}/fov/{k}_test.gif" for k in test]
    rows.append(f"{drive}/images/{train}_training.tif,train,{drive}/fov/{train}_training.gif")
    index.write_text("path,split,fov\n" + "\n".join(rows) + "\n")
    prepare(None, root, size=size, index=index, cpus=1)
    return root


def experiment(tmp_path: Path, data: Path, size: int = 32) -> Path:
    """An experiment folder with one finished trial: an untrained tiny autoencoder at `size` px."""
    from types import SimpleNamespace

    from ablate.config import resolve_grid
    from ablate.data.identity import manifest_sha256
    from ablate.experiment_layout import GRID_FILE
    from ablate.models.checkpoint import write_checkpoint
    from ablate.models.presets import build_model
    from ablate.train.experiment import grid_record

    exp = tmp_path / "exp"
    ckpt = exp / "train" / "l1-s0" / "checkpoint_000000"
    ckpt.mkdir(parents=True)
    spec = SimpleNamespace(model=SimpleNamespace(preset="tiny", overrides={}, edge_channel=None),
                           data=SimpleNamespace(size=size))
    write_checkpoint(ckpt, model_state=build_model("tiny", size, {}).state_dict(), optimizer_state={}, step=1,
                     spec=spec)
    full, _ = resolve_grid("smoke")
    (exp / GRID_FILE).write_text(json.dumps(grid_record(full, str(data), ["l1-s0"],
                                                          data_hash=manifest_sha256(str(data))), default=str))
    pd.DataFrame({"trial": ["l1-s0-x"], "combination": ["l1"], "seed": [0], "status": ["done"],
                  "checkpoint": [str(ckpt)], "config.data.size": [size]}).to_parquet(exp / "results.parquet")
    return exp


@pytest.fixture(scope="module")
def own_data(tmp_path_factory, drive_dir) -> Path:
    return prepared(drive_dir, tmp_path_factory.mktemp("own") / "prepared", ["07", "08", "09", "10"])


def evaluate(exp: Path, data: Path | None = None, segmenter: str = "ridge"):
    from ablate.evaluate.run import EvalOptions, evaluate_experiment

    return evaluate_experiment(EvalOptions(exp=str(exp), data=None if data is None else str(data),
                                           segmenter=segmenter))


def one_line_error(r, *named: str) -> str:
    """The command refused with exit 2 and one `error:` line naming each of `named`, no traceback."""
    out = r.output
    assert r.exit_code == 2, (r.exit_code, out, r.exception)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    assert "Traceback" not in out and "weights_only" not in out, out
    for n in named:
        assert n in out, (n, out)
    return lines[0]


# ---------------------------------------------------------------- finding 4: --segmenter not a segmenter

def _bad_segmenters(tmp_path: Path) -> list[Path]:
    import argparse

    import torch

    (tmp_path / "random.pth").write_bytes(bytes(range(256)) * 7)
    (tmp_path / "notes.txt").write_text("this is a text file\n")
    torch.save({"model": {"w": torch.zeros(3)}, "arch": {}}, tmp_path / "wrong_shape.pt")
    torch.save({"args": argparse.Namespace(a=1)}, tmp_path / "pickled.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other_keys.pt")
    return [tmp_path / n for n in ("random.pth", "notes.txt", "wrong_shape.pt", "pickled.pt", "other_keys.pt")]


# ---------------------------------------------------------------- finding 1: keyed by identity

@pytest.mark.fault
@pytest.mark.usefixtures("no_ray_start")
def test_two_datasets_named_alike_keep_both_results_and_the_report_lists_each_path(tmp_path, drive_dir,
                                                                                    own_data, fake_ray):
    """Finding F1 (issue 25): Two datasets named alike keep both results and the report lists each path."""

    from ablate.report.publish import write_report

    exp = experiment(tmp_path, own_data)
    a = prepared(drive_dir, tmp_path / "siteA" / "prepared", ["01", "02", "03", "04"])
    b = prepared(drive_dir, tmp_path / "siteB" / "prepared", ["05", "06", "11", "12"])
    evaluate(exp, a)
    folders = list((exp / "eval" / "datasets").iterdir())
    assert len(folders) == 1
    first = {p.name: p.read_bytes() for p in folders[0].iterdir()}
    evaluate(exp, b)
    folders = sorted((exp / "eval" / "datasets").iterdir())
    assert len(folders) == 2, folders  # the second never replaced the first
    assert {p.name: p.read_bytes() for p in (exp / "eval" / "datasets" / folders[0].name).iterdir()} == first \
        or {p.name: p.read_bytes() for p in folders[1].iterdir()} == first
    by_data = {}
    for f in folders:
        notes = json.loads((f / "notes.json").read_text())
        assert f.name.startswith("prepared-") and f.name.endswith(notes["manifest_sha256"][:12])
        assert notes["counts"]["test"] == 4 and notes["image_size"] == 32
        by_data[notes["data"]] = set(pd.read_parquet(f / "per_image.parquet")["image_id"])
    assert set(by_data) == {str(a), str(b)} and not by_data[str(a)] & by_data[str(b)]
    md = write_report(exp, n_images=0, hparams=False).with_name("report.md").read_text()
    for f, d in zip(folders, (a, b) if json.loads((folders[0] / "notes.json").read_text())["data"] == str(a)
                    else (b, a)):
        assert f"## Other dataset: {f.name} ({d})" in md
    assert not RAY_STARTS


# ---------------------------------------------------------------- finding 2: a split too small

@pytest.mark.fault
@pytest.mark.usefixtures("no_ray_start")
def test_three_image_split_writes_every_metric_and_names_what_is_not_computable(tmp_path, drive_dir, own_data,
                                                                                  fake_ray):
    """Finding F2 (issue 25): Three image split writes every metric and names what is not computable."""

    from ablate.report.publish import write_report

    exp = experiment(tmp_path, own_data)
    small = prepared(drive_dir, tmp_path / "tiny" / "prepared", ["01", "02", "03"])
    evaluate(exp, small)  # used to fail at its very end (KID's spread needs 4), writing nothing
    folder = next((exp / "eval" / "datasets").iterdir())
    per_image = pd.read_parquet(folder / "per_image.parquet")
    assert len(per_image) == 3 and per_image["psnr"].notna().all() and per_image["dice"].notna().all()
    sets = pd.read_parquet(folder / "set_metrics.parquet").iloc[0]
    assert pd.notna(sets["test/fid"]) and pd.notna(sets["test/kid"]) and pd.isna(sets["test/kid_std"])
    notes = json.loads((folder / "notes.json").read_text())
    said = "KID's spread over subsets (kid_std) not computable at n = 3 test image(s): it needs at least 4"
    assert any(said in s for s in notes["skipped"]), notes["skipped"]
    assert any("MS-SSIM not computable at 32 px" in s for s in notes["skipped"])
    md = write_report(exp, n_images=0, hparams=False).with_name("report.md").read_text()
    assert said in md.split(f"## Other dataset: {folder.name}")[1]


# ---------------------------------------------------------------- finding 3: smaller than the trials

@pytest.mark.bad_input
@pytest.mark.usefixtures("no_ray_start")
def test_dataset_smaller_than_the_trials_is_refused_larger_is_said(tmp_path, drive_dir, own_data, fake_ray,
                                                                     monkeypatch):
    """Finding F3 (issue 25): Dataset smaller than the trials is refused larger is said."""

    from ablate.data.shards import DatasetError

    exp = experiment(tmp_path, own_data)
    small = prepared(drive_dir, tmp_path / "s16" / "prepared", ["01", "02", "03", "04"], size=16)
    from ablate.evaluate import run

    reader = run.load_test_split
    monkeypatch.setattr(run, "load_test_split", lambda *a, **k: pytest.fail("read images to upscale"))
    with pytest.raises(DatasetError) as e:
        evaluate(exp, small)
    assert str(e.value).startswith(f"{small}: prepared at 16 px, the trials were trained at 32 px")
    assert "Prepare it at 32 px" in str(e.value) and not (exp / "eval").exists()
    r = run_cli("evaluate", str(exp), "--data", str(small), "--segmenter", "ridge")
    one_line_error(r, str(small), "16 px", "32 px")
    monkeypatch.setattr(run, "load_test_split", reader)
    large = prepared(drive_dir, tmp_path / "s64" / "prepared", ["01", "02", "03", "04"], size=64)
    evaluate(exp, large)  # resampled down as training reads it, and recorded
    notes = json.loads(next((exp / "eval" / "datasets").iterdir()).joinpath("notes.json").read_text())
    assert notes["resampled"] == [(f"{large}: prepared at 64 px, resampled to 32 px (Lanczos) for the trials "
                                   "trained at 32 px, as training reads it")]


@pytest.mark.bad_input
@pytest.mark.usefixtures("no_ray_start")
def test_a_file_that_is_not_a_segmenter_is_one_line_naming_it(tmp_path, own_data, fake_ray):
    """Finding F4 (issue 25): A file that is not a segmenter is one line naming it."""

    exp = experiment(tmp_path, own_data)
    for bad in _bad_segmenters(tmp_path):
        with pytest.raises(ValueError) as e:  # the evaluation itself (launch calls it so)
            evaluate(exp, segmenter=str(bad))
        assert str(e.value).startswith(f"--segmenter {bad}: ") and "\n" not in str(e.value), str(e.value)
        assert "expected a vessel U-Net written by `ablate segmenter train`" in str(e.value)
        assert "weights_only" not in str(e.value)
        line = one_line_error(run_cli("evaluate", str(exp), "--segmenter", str(bad)), str(bad))
        assert "expected a vessel U-Net written by `ablate segmenter train`" in line, line
    assert not RAY_STARTS and not (exp / "eval").exists()


# ---------------------------------------------------------------- finding 5: an unloadable foundation model

@pytest.mark.fault
@pytest.mark.usefixtures("no_ray_start")
def test_unloadable_foundation_weights_skip_fd_with_a_note_and_the_rest_completes(tmp_path, own_data, fake_ray,
                                                                                    monkeypatch):
    """Finding F5 (issue 25): Unloadable foundation weights skip fd with a note and the rest completes."""

    garbage = tmp_path / "RETFound_mae_natureCFP.pth"
    garbage.write_bytes(bytes(range(256)) * 40)
    monkeypatch.setenv("ABLATE_RETFOUND_WEIGHTS", str(garbage))
    monkeypatch.setenv("ABLATE_FUNDUS_MAE_WEIGHTS", str(tmp_path / "absent.pth"))
    exp = experiment(tmp_path, own_data)
    out = evaluate(exp)
    assert "test/psnr" in out.columns and pd.notna(out["test/fid"].iloc[0])
    assert not any(c.startswith("test/fd_") for c in out.columns)
    notes = json.loads((exp / "eval" / "notes.json").read_text())
    assert any(s.startswith(f"Frechet distance in retfound features not computed: {garbage} does not load")
               for s in notes["skipped"]), notes["skipped"]
    assert (exp / "eval" / "per_image.parquet").is_file()


# ---------------------------------------------------------------- finding 7: arguments before Ray

@pytest.mark.bad_input
@pytest.mark.usefixtures("no_ray_start")
def test_every_evaluate_argument_is_checked_before_ray_starts(tmp_path, own_data):
    """Finding F7 (issue 25): Every evaluate argument is checked before ray starts."""

    exp = experiment(tmp_path, own_data)
    missing = tmp_path / "no-such-exp"
    one_line_error(run_cli("evaluate", str(missing)), str(missing), "results.parquet")
    assert not missing.exists()  # nothing made where the user pointed
    one_line_error(run_cli("evaluate", str(exp), "--data", str(tmp_path / "nodata")), str(tmp_path / "nodata"),
                   "not a prepared dataset")
    one_line_error(run_cli("evaluate", str(exp), "--split", "train"), "--split", "'train'")
    one_line_error(run_cli("evaluate", str(exp), "--segmenter", str(tmp_path / "nope.pth")), str(tmp_path / "nope.pth"))
    one_line_error(run_cli("evaluate", str(exp), "--morphology", "bogus"), "bogus")
    assert not RAY_STARTS
