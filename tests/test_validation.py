"""Issue 20, findings 2, 7, 10 and 11: every launch value and placement refused before Ray
starts (in --dry-run too), manifest.json / grid.json / eval/notes.json of the wrong shape
named in one line, and the dataset's identity (its manifest's sha256) kept in grid.json and
compared on --resume and evaluate. No test here starts Ray."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ablate.config import ConfigError
from ablate.data.shards import DatasetError, read_manifest
from ablate.pipeline import LaunchOptions, prepare_launch

_RAY_STARTS: list = []  # ray.init calls during the current test (see `count_ray_starts`)


@pytest.fixture(autouse=True)
def count_ray_starts(monkeypatch):
    """Every ray.init of the test is recorded and refused: a refusal "before Ray starts" must
    not reach it. (ray.is_initialized() cannot tell: the session's shared Ray may be up.)"""
    import ray

    _RAY_STARTS.clear()

    def refuse(*args, **kwargs):
        _RAY_STARTS.append((args, kwargs))
        raise AssertionError("ray.init called: the check should have refused before Ray starts")

    monkeypatch.setattr(ray, "init", refuse)
    yield


def _no_ray() -> bool:
    return not _RAY_STARTS


@pytest.fixture
def data(tmp_path, drive32) -> Path:
    """A private copy of DRIVE at 32 px, free to be damaged."""
    d = tmp_path / "data"
    shutil.copytree(drive32, d)
    return d


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def _write_manifest(d: Path, m) -> None:
    (d / "manifest.json").write_text(json.dumps(m))


# ---------------------------------------------------------------- finding 2: values before Ray


BAD_VALUES = [
    ({"concurrent": 0}, "--concurrent must be >= 1, got 0"),
    ({"concurrent": -1}, "--concurrent must be >= 1, got -1"),
    ({"workers": 0}, "--workers must be >= 1, got 0"),
    ({"cpus_per_worker": 0.0}, "--cpus-per-worker must be > 0 (at least 0.01), got 0"),
    ({"cpus_per_worker": -1.0}, "--cpus-per-worker must be > 0 (at least 0.01), got -1"),
    ({"cpus_per_worker": math.nan}, "--cpus-per-worker must be > 0 (at least 0.01), got nan"),
    ({"threads_per_worker": 0}, "--threads-per-worker must be >= 1, got 0"),
    ({"gpus_per_worker": -0.5}, "--gpus-per-worker must be >= 0, got -0.5"),
    ({"trial_retries": -1}, "--trial-retries must be >= 0, got -1"),
    ({"max_failures": -2}, "--max-failures must be >= 0, or -1 for unlimited restarts, got -2"),
    ({"steps": 0}, "--steps must be >= 1, got 0"),
    ({"epochs": 0}, "--epochs must be >= 1, got 0"),
    ({"size": -32}, "--size must be a multiple of 8 and >= 16, got -32"),
    ({"size": 20}, "--size must be a multiple of 8 and >= 16, got 20"),
    ({"fm_steps": 0}, "--fm-steps must be >= 1, got 0"),
]


@pytest.mark.parametrize("bad,message", BAD_VALUES, ids=[next(iter(b)) + "=" + str(next(iter(b.values())))
                                                         for b, _ in BAD_VALUES])
@pytest.mark.bad_input
def test_f2_bad_launch_value_refused_in_dry_run_before_ray(bad, message, drive32, capsys):
    with pytest.raises(ConfigError) as e:
        prepare_launch(LaunchOptions(grid="smoke", data=str(drive32), dry_run=True, **bad))
    assert str(e.value) == message
    assert capsys.readouterr().out == ""  # refused first: no trial table, nothing resolved
    assert _no_ray()


@pytest.mark.bad_input
def test_f2_zero_cpu_workers_and_zero_concurrency_refused_by_placement():
    """fm pretrain and segmenter train plan with plan_placement too: 0 CPUs per worker lifted
    the concurrency cap to 99, and a concurrency of 0 reads as unlimited to Tune."""
    from ablate.runtime import plan_placement

    with pytest.raises(ConfigError, match=r"--cpus-per-worker must be > 0 \(at least 0.01\), got 0"):
        plan_placement(2, workers=1, cpus_per_worker=0, gpus_per_worker=0, concurrent=None)
    with pytest.raises(ConfigError, match="--concurrent must be >= 1, got 0"):
        plan_placement(2, workers=1, cpus_per_worker=None, gpus_per_worker=0, concurrent=0)


@pytest.mark.parametrize("opts", [{"workers": 100}, {"workers": 2, "cpus_per_worker": 1.0},
                                  {"concurrent": 3, "cpus_per_worker": 0.5}],
                         ids=["workers100", "2x1cpu", "3concurrent"])
@pytest.mark.bad_input
def test_f2_placement_that_does_not_fit_refused_in_dry_run(opts, monkeypatch, drive32):
    import ablate.runtime

    monkeypatch.setattr(ablate.runtime, "local_resources", lambda: (2.0, 0.0))  # this 2-core machine, anywhere
    with pytest.raises(ConfigError, match="do not fit in 2 CPUs|Lower --concurrent"):
        prepare_launch(LaunchOptions(grid="smoke", data=str(drive32), dry_run=True, **opts))
    assert _no_ray()


def test_f2_unlimited_max_failures_named_in_the_placement_line(monkeypatch, drive32, capsys):
    import ablate.runtime

    monkeypatch.setattr(ablate.runtime, "local_resources", lambda: (2.0, 0.0))
    assert prepare_launch(LaunchOptions(grid="smoke", data=str(drive32), dry_run=True, max_failures=-1)) is None
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("placement:"))
    assert "1 trial(s) at a time" in line and "unlimited worker-group restart(s) per trial (--max-failures -1)" in line
    assert _no_ray()


# ---------------------------------------------------------------- finding 7: manifest shapes


def _no_sha_in_shard_2(m):
    del m["shards"][2]["sha256"]
    return m


BAD_MANIFESTS = [
    ("list", lambda m: [], "top level is a list, expected an object"),
    ("shards_object", lambda m: {"format_version": 1, "shards": {}}, "image_size missing"),
    ("shard_without_sha256", _no_sha_in_shard_2, "shards[2].sha256 missing"),
    ("counts_list", lambda m: {**m, "counts": [18, 2, 20]}, "counts is a list, expected an object"),
    ("count_string", lambda m: {**m, "counts": {**m["counts"], "test": "20"}}, "counts.test is a string"),
    ("size_null", lambda m: {**m, "image_size": None}, "image_size is null, expected an integer >= 1"),
    ("shard_outside", lambda m: {**m, "shards": [{**s, "file": "../../etc/passwd.parquet"} for s in m["shards"]]},
     "shards[0].file is '../../etc/passwd.parquet', expected a .parquet file name inside the dataset folder"),
    ("test_shard_dropped", lambda m: {**m, "shards": [s for s in m["shards"] if s["split"] != "test"]},
     "counts.test is 20 but its shards hold 0 rows"),
    ("old_format", lambda m: {**m, "format_version": 0}, "format_version 0 != 1; re-run prepare"),
]


@pytest.mark.bad_input
@pytest.mark.parametrize("name,damage,message", BAD_MANIFESTS, ids=[b[0] for b in BAD_MANIFESTS])
def test_f7_wrong_shaped_manifest_named_in_one_line(name, damage, message, data):
    _write_manifest(data, damage(_manifest(data)))
    with pytest.raises(DatasetError) as e:
        read_manifest(data)
    assert str(e.value).startswith(f"{data / 'manifest.json'}: {message}")
    assert "\n" not in str(e.value)


@pytest.mark.bad_input
def test_f7_launch_check_covers_the_test_split_when_evaluating(data):
    from ablate.config import find_grid, load_grid
    from ablate.train.grid import check_data

    grid = load_grid(find_grid("smoke"))
    (data / "test-00000.parquet").unlink()  # train and val whole; evaluation would fail after training
    with pytest.raises(DatasetError, match=r"test-00000.parquet: shard listed in manifest.json is missing"):
        check_data(str(data), grid)
    check_data(str(data), grid, evaluate=False)  # --no-evaluate reads no test split
    m = _manifest(data)
    _write_manifest(data, {**m, "counts": {**m["counts"], "test": 0},
                           "shards": [s for s in m["shards"] if s["split"] != "test"]})
    with pytest.raises(DatasetError, match=r"the test split is empty \(evaluation reads it; --no-evaluate"):
        check_data(str(data), grid)


@pytest.mark.bad_input
def test_f7_cli_dry_run_with_a_bad_manifest_is_one_line_no_traceback(data):
    from typer.testing import CliRunner

    from ablate.cli import app

    _write_manifest(data, {"format_version": 1, "shards": {}})
    r = CliRunner().invoke(app, ["launch", "--grid", "smoke", "--data", str(data), "--dry-run"])
    assert r.exit_code == 2, r.output
    assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output
    assert r.output.strip().splitlines() == [f"error: {data / 'manifest.json'}: image_size missing; "
                                             "not a manifest `ablate prepare` wrote (re-run prepare)"]
    assert _no_ray()


@pytest.mark.bad_input
def test_f2_cli_dry_run_with_concurrent_zero_is_refused(drive32):
    from typer.testing import CliRunner

    from ablate.cli import app

    r = CliRunner().invoke(app, ["launch", "--grid", "smoke", "--data", str(drive32), "--dry-run", "--concurrent", "0"])
    assert r.exit_code == 2 and r.output.strip() == "error: --concurrent must be >= 1, got 0"
    r = CliRunner().invoke(app, ["launch", "--grid", "smoke", "--data", str(drive32), "--dry-run", "--only", ","])
    assert r.exit_code == 2 and "--only ',': no combination named" in r.output


# ---------------------------------------------------------------- finding 11: notes.json and grid.json


def _exp(tmp_path) -> Path:
    from tests.helpers.experiments import make_exp

    return make_exp(tmp_path / "e", {"base": {}, "l2": {}})


@pytest.mark.parametrize("notes,message", [
    ([], "top level is a list, expected an object"),
    ({"skipped": "LPIPS not computed"}, "skipped is a string, expected a list"),
    ({"skipped": 5}, "skipped is an integer, expected a list"),
    ({"segmenter": {"name": "ridge"}}, "segmenter is an object, expected a string"),
], ids=["list", "skipped_string", "skipped_number", "segmenter_object"])
@pytest.mark.bad_input
def test_f11_wrong_shaped_notes_json_report_goes_on_and_says_so(notes, message, tmp_path):
    from typer.testing import CliRunner

    from ablate.cli import app

    exp = _exp(tmp_path)
    (exp / "eval" / "notes.json").write_text(json.dumps(notes))
    r = CliRunner().invoke(app, ["report", str(exp), "--images", "0", "--no-hparams"])
    assert r.exit_code == 0, r.output
    said = f"{exp / 'eval' / 'notes.json'}: {message}; left out, so which segmenter"
    assert f"warning: {said}" in r.output and "Traceback" not in r.output  # on the console
    md = (exp / "report" / "report.md").read_text()
    assert said in md and "Skipped in evaluation: L\n" not in md  # in the report; no per-letter warnings


@pytest.mark.bad_input
def test_f11_other_dataset_notes_of_the_wrong_shape_said_in_its_section(tmp_path):
    from ablate.report.publish import write_report

    exp = _exp(tmp_path)
    other = exp / "eval" / "datasets" / "camera2"
    other.mkdir(parents=True)
    shutil.copy(exp / "eval" / "per_image.parquet", other / "per_image.parquet")
    (other / "notes.json").write_text(json.dumps({"images": "twelve"}))
    md = write_report(exp, n_images=0, hparams=False).with_name("report.md").read_text()
    section = md.split("## Other dataset: camera2")[1]
    assert f"WARNING: {other / 'notes.json'}: images is a string, expected an integer >= 0; left out" in section


@pytest.mark.bad_input
def test_f11_grid_json_of_the_wrong_shape(tmp_path):
    """The report goes on (order from results.parquet, said); a launch into the folder refuses it."""
    from ablate.config import find_grid, load_grid
    from ablate.report.collect import load_experiment
    from ablate.train.experiment import check_experiment_folder

    exp = _exp(tmp_path)
    (exp / "grid.json").write_text(json.dumps({"name": "synthetic", "trials": ["base-s0"]}))
    e = load_experiment(exp)
    assert any("grid.json: trials is a list, expected an object; left out" in w for w in e.warnings)
    with pytest.raises(ConfigError, match=r"grid.json: trials is a list, expected an object; not a grid record"):
        check_experiment_folder(exp, load_grid(find_grid("smoke")), resume=True)


# ---------------------------------------------------------------- finding 10: the dataset's identity


@pytest.mark.fault
def test_f10_dataset_reprepared_in_place_is_refused_naming_both_hashes(tmp_path, drive_dir, monkeypatch):
    from ablate.config import resolve_grid
    from ablate.data.identity import RECORD_KEY, manifest_sha256
    from ablate.data.shards import prepare
    from ablate.evaluate.run import EvalOptions, evaluate_experiment
    from ablate.train.experiment import GRID_RECORD, check_experiment_folder, grid_record

    d, out = tmp_path / "data", tmp_path / "exp"
    prepare(drive_dir, d, size=32)
    before = manifest_sha256(str(d))
    full, _ = resolve_grid("smoke")
    out.mkdir()
    record = grid_record(full, str(d), ["l1-s0"], data_hash=before)
    assert record[RECORD_KEY] == before
    (out / GRID_RECORD).write_text(json.dumps(record, default=str))
    check_experiment_folder(out, full, resume=True, data=str(d), data_hash=manifest_sha256(str(d)))  # same data
    prepare(drive_dir, d, size=64)  # re-prepared in place: same path, other images
    after = manifest_sha256(str(d))
    assert after != before
    with pytest.raises(DatasetError) as e:
        check_experiment_folder(out, full, resume=True, data=str(d), data_hash=after)
    assert f"records manifest sha256 {before}, manifest.json now hashes to {after}" in str(e.value)
    assert str(e.value).startswith("--resume: ") and "new --out" in str(e.value)
    # the whole launch path, before Ray: refused the same way
    with pytest.raises(DatasetError, match=f"records manifest sha256 {before}"):
        prepare_launch(LaunchOptions(grid="smoke", data=str(d), out=str(out), resume=True))
    # `ablate evaluate` of the experiment's own dataset: refused before any image is read
    pd.DataFrame({"trial": ["l1-s0-x"], "combination": ["l1"], "seed": [0], "status": ["done"],
                  "checkpoint": ["ckpt"], "config.data.size": [32]}).to_parquet(out / "results.parquet")
    monkeypatch.setattr("ablate.evaluate.run.load_test_split", lambda *a, **k: pytest.fail("read a changed dataset"))
    with pytest.raises(DatasetError, match=f"ablate evaluate: .*records manifest sha256 {before}, .* {after}"):
        evaluate_experiment(EvalOptions(exp=str(out)))
    assert _no_ray()


@pytest.mark.fault
def test_f10_record_without_a_hash_is_resumed_with_a_warning_and_gains_it(tmp_path, data, capsys):
    from ablate.config import resolve_grid
    from ablate.data.identity import RECORD_KEY, manifest_sha256
    from ablate.train.experiment import GRID_RECORD, check_experiment_folder, grid_fingerprint, record_dataset

    full, _ = resolve_grid("smoke")
    out = tmp_path / "exp"
    out.mkdir()
    (out / GRID_RECORD).write_text(json.dumps(grid_fingerprint(full, str(data)), default=str))  # an older launch
    now = manifest_sha256(str(data))
    check_experiment_folder(out, full, resume=True, data=str(data), data_hash=now)
    assert "grid.json records no dataset hash" in capsys.readouterr().err
    assert record_dataset(out, now) and json.loads((out / GRID_RECORD).read_text())[RECORD_KEY] == now
    assert not record_dataset(out, "0" * 64)  # a recorded hash is never replaced
