"""Experiments and datasets on object storage, against a real S3 API: moto's server
started on 127.0.0.1 (a free port) for this module and stopped after it. pyarrow
(and so Ray) find it through AWS_ENDPOINT_URL, as they would find MinIO or any
S3-compatible store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ablate import storage
from ablate.data.shards import DatasetError, read_manifest, shard_paths
from tests.s3_server import BUCKET


def _keys(prefix: str) -> list[str]:
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


# ---------------------------------------------------------------- storage.py


def test_paths_and_uris():
    assert storage.is_uri("s3://b/x") and storage.is_uri("gs://b") and not storage.is_uri("/tmp/x")
    assert not storage.is_uri("runs/s3:/x")
    assert storage.join("s3://b/exp/", "train", "t1") == "s3://b/exp/train/t1"
    assert storage.join("/tmp/exp", "train", "t1") == "/tmp/exp/train/t1"
    assert storage.split("s3://b/runs/exp/") == ("s3://b/runs", "exp")
    with pytest.raises(storage.StorageError, match="s3://b: name a folder inside the bucket"):
        storage.split("s3://b")
    with pytest.raises(storage.StorageError, match=r"s3://b/x\?endpoint_override=h: a query .* AWS_ENDPOINT_URL"):
        storage.join("s3://b/x?endpoint_override=h", "y")


def test_read_write_list_on_s3(s3, tmp_path):
    base = f"s3://{BUCKET}/unit"
    assert not storage.is_dir(base) and not storage.has_entries(base) and storage.list_files(base) == {}
    storage.write_text(storage.join(base, "a", "b.txt"), "hello")
    storage.write_bytes(storage.join(base, "c.bin"), b"\x00" * 10)
    assert _keys("unit/") == ["unit/a/b.txt", "unit/c.bin"]
    assert storage.read_text(f"{base}/a/b.txt") == "hello" and storage.read_range(f"{base}/a/b.txt", 1, 3) == b"ell"
    assert storage.is_file(f"{base}/c.bin") and not storage.is_file(f"{base}/a") and storage.is_dir(f"{base}/a")
    assert storage.list_files(base) == {"a/b.txt": 5, "c.bin": 10} and storage.has_entries(base)
    with pytest.raises(FileNotFoundError, match=f"{base}/nothing.txt: not found"):
        storage.read_bytes(f"{base}/nothing.txt")
    df = pd.DataFrame({"x": [1, 2], "y": ["a", None]})
    storage.write_parquet(df, f"{base}/t.parquet")
    pd.testing.assert_frame_equal(storage.read_parquet(f"{base}/t.parquet"), df)
    # A folder round trip, then removal.
    (tmp_path / "up" / "sub").mkdir(parents=True)
    (tmp_path / "up" / "sub" / "f.txt").write_text("f")
    (tmp_path / "up" / "g.txt").write_text("g")
    assert storage.upload_dir(tmp_path / "up", f"{base}/up") == ["g.txt", "sub/f.txt"]
    assert storage.download_dir(f"{base}/up", tmp_path / "down") == ["g.txt", "sub/f.txt"]
    assert (tmp_path / "down" / "sub" / "f.txt").read_text() == "f"
    storage.delete_dir(base)
    assert _keys("unit/") == []
    assert storage.as_uri(base, f"{BUCKET}/unit/train/t/checkpoint_1") == f"s3://{BUCKET}/unit/train/t/checkpoint_1"
    assert storage.as_uri(base, None) is None and storage.as_uri("/tmp/e", "/tmp/e/x") == "/tmp/e/x"


@pytest.mark.bad_input
def test_missing_bucket_is_named(s3):
    with pytest.raises(storage.StorageError, match="s3://no-such-bucket/x/y.txt: .*(NO_SUCH_BUCKET|not found)"):
        storage.write_text("s3://no-such-bucket/x/y.txt", "x")


# ---------------------------------------------------------------- datasets and experiment folders


@pytest.fixture(scope="module")
def s3_data(s3, drive32) -> str:
    """DRIVE at 32 px, prepared locally and uploaded (as `aws s3 sync` would)."""
    uri = f"s3://{BUCKET}/data/drive32"
    storage.upload_dir(drive32, uri)
    return uri


def test_dataset_on_s3(s3_data):
    assert read_manifest(s3_data)["image_size"] == 32
    paths = shard_paths(s3_data, "train")
    assert paths and all(p.startswith(f"{s3_data}/train-") for p in paths)
    with pytest.raises(DatasetError, match=f"s3://{BUCKET}/nothing: not a prepared dataset .*prepare it there"):
        read_manifest(f"s3://{BUCKET}/nothing")
    # An altered shard is caught by its checksum, named by URI.
    bad = f"s3://{BUCKET}/data/bad"
    for rel in storage.list_files(s3_data):
        storage.write_bytes(f"{bad}/{rel}", storage.read_bytes(f"{s3_data}/{rel}"))
    storage.write_bytes(paths[0].replace(s3_data, bad), b"truncated")
    with pytest.raises(DatasetError, match=f"{bad}/train-00000.parquet: checksum differs"):
        shard_paths(bad, "train")
    assert shard_paths(bad, "train", verify=False)  # present, only the content is wrong


def test_experiment_folder_checks_on_s3(s3):
    from ablate.config import ConfigError, find_grid, load_grid
    from ablate.experiment_layout import GRID_FILE
    from ablate.train.experiment import check_experiment_folder, grid_fingerprint

    grid = load_grid(find_grid("smoke"))
    out = f"s3://{BUCKET}/checks/exp"
    with pytest.raises(ConfigError, match=f"--resume: {out} holds no experiment to resume"):
        check_experiment_folder(out, grid, resume=True)
    check_experiment_folder(out, grid, resume=False)  # empty: fine
    storage.write_text(f"{out}/notes.txt", "someone else's")
    with pytest.raises(ConfigError, match=f"--out {out} is not empty and holds no ablate experiment"):
        check_experiment_folder(out, grid, resume=False)
    storage.write_text(f"{out}/{GRID_FILE}", json.dumps(grid_fingerprint(grid), default=str))
    check_experiment_folder(out, grid, resume=True)
    with pytest.raises(ConfigError, match=r"already holds trials \[.*\] of this grid; add --resume"):
        check_experiment_folder(out, grid, resume=False)


# ---------------------------------------------------------------- TensorBoard to and from the bucket


def _scalars(logdir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_trial_writer_uploads_and_mirror_follows(s3, tmp_path, monkeypatch):
    from ablate.runtime import tensorboard as tb

    uri = f"s3://{BUCKET}/tb/exp/tensorboard/trial-a"
    w = tb.TrialWriter(uri)
    local = Path(w.local)
    w.scalars({"loss/l1": 1.0}, 1)  # within UPLOAD_EVERY_S of the start: nothing uploaded yet
    assert _keys("tb/") == []
    monkeypatch.setattr(tb, "UPLOAD_EVERY_S", 0.0)
    w.scalars({"loss/l1": 0.5}, 2)  # due: flushed and uploaded while the trial runs
    (event_key,) = _keys("tb/")
    mirror = tmp_path / "mirror"
    tb.mirror_logs(f"s3://{BUCKET}/tb/exp/tensorboard", mirror)
    mirrored = mirror / "trial-a" / Path(event_key).name
    assert _scalars(mirror / "trial-a", "loss/l1") == [(1, 1.0), (2, 0.5)]
    inode = mirrored.stat().st_ino
    monkeypatch.setattr(tb, "UPLOAD_EVERY_S", 3600.0)
    w.scalars({"loss/l1": 0.25}, 3)
    w.close()  # the rest goes up on close, and the local temporary folder is removed
    assert not local.exists() and _keys("tb/") == [event_key]
    assert tb.mirror_logs(f"s3://{BUCKET}/tb/exp/tensorboard", mirror) == 1
    # Appended in place (TensorBoard keeps its open file), not replaced.
    assert mirrored.stat().st_ino == inode
    assert _scalars(mirror / "trial-a", "loss/l1") == [(1, 1.0), (2, 0.5), (3, 0.25)]
    (mirror / "trial-a" / "stale").write_text("gone from the bucket")
    tb.mirror_logs(f"s3://{BUCKET}/tb/exp/tensorboard", mirror)
    assert not (mirror / "trial-a" / "stale").exists()


def test_trial_writer_rotates_big_event_files(s3, tmp_path, monkeypatch):
    """Past ROTATE_BYTES the writer starts a new event file, so a long run does not
    re-upload one ever-growing file; TensorBoard reads the files as one run."""
    from ablate.runtime import tensorboard as tb

    monkeypatch.setattr(tb, "UPLOAD_EVERY_S", 0.0)
    monkeypatch.setattr(tb, "ROTATE_BYTES", 1)
    uri = f"s3://{BUCKET}/rot/tensorboard/trial-a"
    w = tb.TrialWriter(uri)
    for step in (1, 2, 3):
        w.scalars({"loss/l1": float(step)}, step)
    w.close()
    assert len(_keys("rot/")) == 4  # one file per upload, plus the last writer's (closed on close)
    tb.mirror_logs(f"s3://{BUCKET}/rot/tensorboard", tmp_path / "m")
    # Read file by file: TensorBoard orders a run's files by name (creation second, then
    # a per-process counter), and these rotations all happen within one second, which
    # real ones (at most one per UPLOAD_EVERY_S) never do; the order here would depend
    # on how many writers earlier tests created (counter 9 sorts after 10).
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util.tensor_util import make_ndarray

    got = []
    for f in sorted((tmp_path / "m" / "trial-a").iterdir()):
        got += [(e.step, float(make_ndarray(v.tensor)) if v.HasField("tensor") else v.simple_value)
                for e in EventFileLoader(str(f)).Load() for v in e.summary.value if v.tag == "loss/l1"]
    assert sorted(got) == [(1, 1.0), (2, 2.0), (3, 3.0)]


@pytest.mark.fault
def test_trial_writer_upload_failures_are_said(s3, monkeypatch, capsys):
    from ablate.runtime import tensorboard as tb

    uri = "s3://no-such-bucket/exp/tensorboard/trial-a"
    w = tb.TrialWriter(uri)
    monkeypatch.setattr(tb, "UPLOAD_EVERY_S", 0.0)
    w.scalars({"loss/l1": 1.0}, 1)  # training goes on; the failure is in the log
    assert f"warning: TensorBoard upload to {uri} failed" in capsys.readouterr().err
    with pytest.raises(storage.StorageError, match=f"{uri}/events.out.tfevents"):
        w.close()  # the last upload must land: the trial is told


def test_report_and_tensorboard_on_s3_without_training(s3, tmp_path, monkeypatch):
    """The report of an experiment in the bucket: inputs staged, outputs uploaded, the URI
    named; then `ablate tensorboard URI` serves a local mirror holding its HParams sessions."""
    import typer
    from typer.testing import CliRunner

    from ablate.report.cli import mirror_folder, report, tensorboard
    from ablate.ui.console import Commands
    from tests.helpers.experiments import make_exp

    exp = make_exp(tmp_path / "e", {"base": {}, "lpips": {}})
    uri = f"s3://{BUCKET}/reports/exp"
    storage.upload_dir(exp, uri)
    app = typer.Typer(cls=Commands)  # as ablate/cli.py registers them: its group turns a user error into exit 2
    app.command("report")(report)
    app.command("tensorboard")(tensorboard)
    r = CliRunner().invoke(app, ["report", uri, "--images", "0"])
    assert r.exit_code == 0, r.output
    assert f"report: {uri}/report/index.html" in r.output
    keys = _keys("reports/exp/")
    assert {"reports/exp/report/index.html", "reports/exp/report/report.md", "reports/exp/report/summary.parquet"} <= set(keys)
    trials = pd.read_parquet(exp / "results.parquet")["trial"]
    assert all(any(k.startswith(f"reports/exp/tensorboard/{t}/hparams/events.out.tfevents") for k in keys) for t in trials)
    assert f"experiment: `{uri}`" in storage.read_text(f"{uri}/report/report.md")
    # Again: each trial's HParams session is replaced, not duplicated.
    assert CliRunner().invoke(app, ["report", uri, "--images", "0"]).exit_code == 0
    assert sum("/hparams/" in k for k in _keys("reports/exp/")) == len(trials)
    r = CliRunner().invoke(app, ["report", f"s3://{BUCKET}/reports/none"])
    assert r.exit_code == 2 and f"s3://{BUCKET}/reports/none/results.parquet: not found" in r.output

    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "cache"))
    r = CliRunner().invoke(app, ["tensorboard", uri, "--print-only", "--port", "6123"])
    assert r.exit_code == 0, r.output
    mirror = mirror_folder(f"{uri}/tensorboard")
    assert str(mirror).startswith(str(tmp_path / "cache")) and f"--logdir {mirror} " in r.output
    assert sorted(p.parent.name for p in mirror.glob("*/hparams")) == sorted(trials)
    r = CliRunner().invoke(app, ["tensorboard", f"s3://{BUCKET}/reports/none", "--print-only"])
    assert r.exit_code == 2 and f"s3://{BUCKET}/reports/none/tensorboard: no TensorBoard logs" in r.output


# ---------------------------------------------------------------- end to end


def _ablate(env: dict, *args: str, timeout: float = 420) -> subprocess.CompletedProcess:
    """`ablate` as a user runs it: its own process and its own Ray, with the S3 environment
    (Ray's workers inherit it; a session-wide Ray started earlier in the tests would not)."""
    full = {**os.environ, **env, "ABLATE_RAY_TMP": os.environ.get("ABLATE_RAY_TMP", f"/tmp/ablate-s3-{os.getpid()}")}
    return subprocess.run([sys.executable, "-m", "ablate.cli", *args], env=full, capture_output=True, text=True, check=False,
                          timeout=timeout)


@pytest.mark.ray
def test_grid_on_s3_end_to_end(s3, s3_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.helpers import TINY_GRID

    grid = tmp_path / "one.yaml"
    grid.write_text(TINY_GRID.replace("  l2: {losses: {l2: {weight: 1.0}}}\n", ""))
    out = f"s3://{BUCKET}/runs/e2e"
    args = ["launch", "--grid", str(grid), "--data", s3_data, "--out", out, "--segmenter", "ridge"]
    r = _ablate(s3, *args)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    keys = _keys("runs/e2e/")
    df = storage.read_parquet(f"{out}/results.parquet")
    assert len(df) == 1 and df.loc[0, "status"] == "done" and df.loc[0, "steps"] == 6
    trial, ckpt = df.loc[0, "trial"], df.loc[0, "checkpoint"]
    # Checkpoints written by Ray Train straight to the bucket, recorded as URIs.
    assert ckpt.startswith(f"{out}/train/") and storage.is_file(f"{ckpt}/checkpoint.pt")
    assert df.loc[0, "trial_dir"].startswith(f"{out}/")
    assert {"runs/e2e/grid.json", "runs/e2e/results.csv", "runs/e2e/eval/per_image.parquet",
            "runs/e2e/eval/notes.json", "runs/e2e/report/index.html"} <= set(keys)
    assert any(k.startswith("runs/e2e/experiment_state-") for k in keys)  # Tune's state, for --resume
    # Evaluation read the test split and the checkpoint from the bucket, inside its Ray tasks.
    per_image = storage.read_parquet(f"{out}/eval/per_image.parquet")
    assert len(per_image) == 20 and df["test/psnr"].notna().all()
    # TensorBoard events, uploaded by the trial, read back after download.
    storage.download_dir(f"{out}/tensorboard/{trial}", tmp_path / "tb")
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss/l1")] == [2, 4, 6]
    assert [e.step for e in acc.Images("images/input|reconstruction")] == [3, 6]
    # The report's image grid: test images from the bucket, reconstructed from the checkpoint there.
    html = storage.read_text(f"{out}/report/index.html")
    assert re.findall(r'<colgroup data-config="([^"]+)"', html) == ["original", "l1"]
    assert f"<tr><td><b>experiment</b></td><td>{out}</td></tr>" in html  # the URI, not a staging folder

    # Same rules as a local folder: no silent restart over a finished grid...
    r = _ablate(s3, *args, "--no-evaluate")
    assert r.returncode == 2 and f"--out {out} already holds trials" in r.stderr and "add --resume" in r.stderr
    # ...and a resume keeps the finished trial as it is.
    checkpoints = [k for k in _keys("runs/e2e/train/") if k.endswith("checkpoint.pt")]
    r = _ablate(s3, *args, "--no-evaluate", "--resume")
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    again = storage.read_parquet(f"{out}/results.parquet")
    assert list(again["trial"]) == [trial] and again.loc[0, "status"] == "done" and again.loc[0, "steps"] == 6
    assert [k for k in _keys("runs/e2e/train/") if k.endswith("checkpoint.pt")] == checkpoints


@pytest.mark.bad_input
def test_results_csv_text_cells_cannot_start_a_spreadsheet_formula(tmp_path):
    """results.csv is opened in spreadsheets: a combination or error text starting with =, +, -, @
    gets OWASP's leading quote; numbers (negative ones too) stay numbers."""
    import pandas as pd

    from ablate.storage import csv_uncell, write_csv

    df = pd.DataFrame({"combination": ["=HYPERLINK(\"http://x\")", "base"], "error": ["@SUM(1)", None],
                       "val/psnr": [-1.5, 20.0]})
    write_csv(df, tmp_path / "results.csv")
    back = pd.read_csv(tmp_path / "results.csv")
    assert list(back["combination"]) == ["'=HYPERLINK(\"http://x\")", "base"]
    assert back.loc[0, "error"] == "'@SUM(1)" and list(back["val/psnr"]) == [-1.5, 20.0]
    assert csv_uncell(back.loc[0, "combination"]) == df.loc[0, "combination"]
    assert df.loc[0, "combination"].startswith("=")  # the caller's frame is not changed
