"""Issue 20, one writer and trustworthy files: the experiment lock (local flock, S3 lease),
results that never lose a finished trial's checkpoint, verified checkpoints with a fallback
to the trial's earlier one, one judge per evaluation, TensorBoard stopped with its
`ablate tensorboard`, and a local Ray that listens on loopback only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from ablate.lock import LOCK_FILE, ExperimentLocked, experiment_lock
from tests.s3_server import BUCKET

# ---------------------------------------------------------------- finding 1: one writer


@pytest.mark.fault
def test_f1_second_writer_refused_naming_holder(tmp_path):
    with experiment_lock(tmp_path, "ablate launch --grid smoke"), pytest.raises(ExperimentLocked) as e:
        with experiment_lock(tmp_path, "ablate evaluate"):
            pass
    msg = str(e.value)
    assert "'ablate launch --grid smoke'" in msg and f"PID {os.getpid()}" in msg
    assert "host " + os.uname().nodename in msg and "since 20" in msg


@pytest.mark.fault
def test_f1_report_command_refused_while_a_launch_writes(tmp_path):
    from typer.testing import CliRunner

    from ablate.cli import app

    with experiment_lock(tmp_path, "ablate launch --grid smoke"):
        r = CliRunner().invoke(app, ["report", str(tmp_path), "--images", "0"])
    assert r.exit_code != 0
    assert "another ablate command is writing this experiment" in r.output and "launch --grid smoke" in r.output


@pytest.mark.fault
def test_f1_stale_lock_of_a_dead_pid_taken_over_with_message(tmp_path, capsys):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"user": "x", "host": os.uname().nodename, "pid": 2 ** 22 + 12345,
                                                  "command": "ablate launch --grid old", "since": 1.0e9}))
    with experiment_lock(tmp_path, "ablate launch --grid new"):
        rec = json.loads((tmp_path / LOCK_FILE).read_text())
    err = capsys.readouterr().err
    assert "taking over a stale lock" in err and f"PID {2 ** 22 + 12345}" in err and "process is gone" in err
    assert rec["pid"] == os.getpid() and rec["command"] == "ablate launch --grid new"


@pytest.mark.fault
def test_f1_lock_released_after_the_command_and_on_exception(tmp_path):
    with experiment_lock(tmp_path, "a"):
        assert (tmp_path / LOCK_FILE).is_file()
    assert not (tmp_path / LOCK_FILE).exists()  # nothing left in the experiment folder
    with pytest.raises(RuntimeError), experiment_lock(tmp_path, "b"):
        raise RuntimeError("boom")
    with experiment_lock(tmp_path, "c"):  # free again
        pass
    assert not (tmp_path / LOCK_FILE).exists()


@pytest.mark.fault
def test_f1_lock_held_by_another_process_is_refused(tmp_path):
    """flock between processes (the case of two `ablate launch`), and freed when the holder dies."""
    code = (f"import time\nfrom ablate.lock import experiment_lock\n"
            f"with experiment_lock({str(tmp_path)!r}, 'ablate launch --grid other'):\n"
            f"    print('held', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ExperimentLocked, match=f"PID {holder.pid}"), experiment_lock(tmp_path, "mine"):
            pass
    finally:
        holder.kill()
        holder.wait()
    with experiment_lock(tmp_path, "mine"):  # a killed holder's lock is free (the kernel dropped it)
        pass


@pytest.mark.fault
def test_f1_s3_lease_refuses_a_second_writer_takes_over_a_stale_one_and_is_released(s3, capsys):
    import boto3

    from ablate.lock import LEASE_FILE, _Lease

    exp = f"s3://{BUCKET}/lease-exp"
    key = f"lease-exp/{LEASE_FILE}"
    client = boto3.client("s3")
    with experiment_lock(exp, "ablate launch --grid s3", heartbeat_s=0.2):
        first = json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        time.sleep(0.5)  # the heartbeat thread refreshed it
        beat = json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        assert beat["heartbeat"] > first["heartbeat"]
        with pytest.raises(ExperimentLocked, match=r"'ablate launch --grid s3'.*PID"):
            with experiment_lock(exp, "ablate report", heartbeat_s=0.2):
                pass
        # S3's conditional create: a writer that raced past the read cannot create it again.
        assert _Lease(exp, "racer")._write(create=True) is False
    assert "Contents" not in client.list_objects_v2(Bucket=BUCKET, Prefix=key)  # released
    client.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(
        {"user": "x", "host": "gone-host", "pid": 7, "command": "ablate launch --grid dead", "since": 1.0e9,
         "heartbeat": time.time() - 3600}).encode())
    with experiment_lock(exp, "ablate evaluate", heartbeat_s=0.2):
        assert json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())["command"] == "ablate evaluate"
    assert "taking over a stale lease" in capsys.readouterr().err


@pytest.mark.fault
def test_f1_merge_never_replaces_a_finished_checkpoint_with_none(capsys):
    from ablate.train.results import merge_results

    old = pd.DataFrame([{"trial": "l1-s0-a", "combination": "l1", "seed": 0, "status": "done", "checkpoint": "/x/ck1",
                         "val/loss": 0.1},
                        {"trial": "l2-s0-b", "combination": "l2", "seed": 0, "status": "incomplete",
                         "checkpoint": None, "val/loss": 0.5}])
    new = pd.DataFrame([{"trial": "l1-s0-c", "combination": "l1", "seed": 0, "status": "incomplete",
                         "checkpoint": None, "val/loss": 9.0},
                        {"trial": "l2-s0-b", "combination": "l2", "seed": 0, "status": "done", "checkpoint": "/x/ck2",
                         "val/loss": 0.2}])
    merged = merge_results(old, new).set_index("combination")
    assert len(merged) == 2
    assert merged.loc["l1", "checkpoint"] == "/x/ck1" and merged.loc["l1", "status"] == "done"
    assert merged.loc["l1", "val/loss"] == 0.1
    assert merged.loc["l2", "checkpoint"] == "/x/ck2"  # a finished resume still replaces an unfinished row
    assert "l1-s0-a: kept as finished with checkpoint /x/ck1" in capsys.readouterr().out


# ---------------------------------------------------------------- finding 5: verified checkpoints


SPEC = SimpleNamespace(model=SimpleNamespace(preset="tiny", overrides={}, edge_channel=None),
                       data=SimpleNamespace(size=32))


def _checkpoints(exp: Path, trial: str, n: int, record: bool = True) -> list[Path]:
    """`n` checkpoint folders of a trial's Ray Train run, oldest first, written as training does."""
    from ablate.models.checkpoint import CHECKPOINT_FILE, RECORD_FILE, write_checkpoint
    from ablate.models.presets import build_model

    model = build_model("tiny", 32, {})
    out = []
    for k in range(n):
        folder = exp / "train" / trial / f"checkpoint_2026-01-01_00-00-0{k}.000000"
        folder.mkdir(parents=True)
        write_checkpoint(folder, model_state=model.state_dict(), optimizer_state={}, step=3 * (k + 1), spec=SPEC)
        if not record:
            (folder / RECORD_FILE).unlink()
        assert (folder / CHECKPOINT_FILE).is_file()
        out.append(folder)
    return out


def _truncate(folder: Path) -> Path:
    f = folder / "checkpoint.pt"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return f


def test_f5_checkpoint_records_size_and_sha256(tmp_path):
    from ablate.io import sha256_file
    from ablate.models.checkpoint import verify_checkpoint

    (ck,) = _checkpoints(tmp_path, "l1-s0-a", 1)
    rec = json.loads((ck / "checkpoint.json").read_text())
    assert rec == {"file": "checkpoint.pt", "size": (ck / "checkpoint.pt").stat().st_size,
                   "sha256": sha256_file(ck / "checkpoint.pt")}
    assert verify_checkpoint(ck) == "verified"


@pytest.mark.fault
def test_f5_truncated_checkpoint_named_and_the_earlier_one_used(tmp_path):
    from ablate.evaluate.plan import plan_evaluation

    a_old, a_new = _checkpoints(tmp_path, "l1-s0-a", 2)
    (b_only,) = _checkpoints(tmp_path, "l2-s0-b", 1)
    (c_ok,) = _checkpoints(tmp_path, "ssim-s0-c", 1)
    bad_a, bad_b = _truncate(a_new), _truncate(b_only)
    results = pd.DataFrame([
        {"trial": "l1-s0-a", "status": "done", "checkpoint": str(a_new)},
        {"trial": "l2-s0-b", "status": "done", "checkpoint": str(b_only)},
        {"trial": "ssim-s0-c", "status": "done", "checkpoint": str(c_ok)},
    ])
    plan = plan_evaluation(tmp_path, results, {"name": "ridge", "sha256": None}, None)
    chosen = dict(zip(plan.trials["trial"], plan.trials["checkpoint"]))
    assert chosen == {"l1-s0-a": str(a_old), "ssim-s0-c": str(c_ok)}  # the healthy trial still evaluated
    assert plan.skipped == ["l2-s0-b"] and plan.fallbacks == {"l1-s0-a": str(a_old)}
    said = "\n".join(plan.notes)
    assert f"l1-s0-a: corrupt checkpoint {bad_a}" in said and "truncated" in said
    assert f"l1-s0-a: using its earlier checkpoint {a_old}" in said
    assert f"l2-s0-b: corrupt checkpoint {bad_b}" in said and "l2-s0-b: no valid checkpoint left" in said


@pytest.mark.fault
def test_f5_checkpoint_without_record_is_loadable_and_said_unverified(tmp_path):
    from ablate.models.checkpoint import CheckpointCorrupt, usable_checkpoint, verify_checkpoint

    old, new = _checkpoints(tmp_path, "l1-s0-a", 2, record=False)
    assert verify_checkpoint(new) == "unverified"
    folder, notes = usable_checkpoint(new, "l1-s0-a")
    assert folder == str(new) and "unverified" in notes[0]
    _truncate(new)  # without a record, a damaged file is found by loading it
    with pytest.raises(CheckpointCorrupt, match="cannot be loaded"):
        verify_checkpoint(new)
    assert usable_checkpoint(new, "l1-s0-a")[0] == str(old)


@pytest.mark.fault
def test_f5_damaged_bytes_of_the_same_size_fail_the_hash(tmp_path):
    from ablate.models.checkpoint import CheckpointCorrupt, verify_checkpoint

    (ck,) = _checkpoints(tmp_path, "l1-s0-a", 1)
    f = ck / "checkpoint.pt"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointCorrupt, match="sha256 differs"):
        verify_checkpoint(ck)


@pytest.mark.fault
def test_f5_resume_from_a_truncated_latest_checkpoint_uses_the_previous_one(tmp_path, monkeypatch, capsys):
    """The Train worker's restore (a worker-group restart or --resume): the latest checkpoint
    is verified first; a truncated one is named and the run's previous one loaded."""
    import torch

    from ablate.models.checkpoint import write_checkpoint
    from ablate.models.presets import build_model
    from ablate.train import loop

    model = build_model("tiny", 32, {})
    opt = torch.optim.Adam(model.parameters())
    folders = []
    for k, step in enumerate((4, 8)):
        folder = tmp_path / "train" / "l1-s0-a" / f"checkpoint_2026-01-01_00-00-0{k}.000000"
        folder.mkdir(parents=True)
        write_checkpoint(folder, model_state=model.state_dict(), optimizer_state=opt.state_dict(), step=step, spec=SPEC)
        folders.append(folder)
    bad = _truncate(folders[1])
    monkeypatch.setattr(loop, "restored_location", lambda: str(folders[1]))
    worker = SimpleNamespace(device=torch.device("cpu"), rank=0, model=model, opt=opt, d_opt=None, scaler=None,
                             spec=SimpleNamespace(combination="l1", seed=0))
    assert loop.WorkerRun._restore(worker) == 4  # the previous checkpoint's step, not a crash, not step 0
    err = capsys.readouterr().err
    assert f"corrupt checkpoint {bad}" in err and f"using its earlier checkpoint {folders[0]}" in err


# ---------------------------------------------------------------- finding 14: one judge


@pytest.mark.fault
def test_f14_changed_segmenter_reevaluates_every_trial_and_is_recorded(tmp_path):
    from ablate.evaluate.plan import plan_evaluation, recorded_judge, segmenter_identity

    unet = tmp_path / "vessel_unet.pth"
    unet.write_bytes(b"weights")
    judge = segmenter_identity(str(unet))
    assert judge["name"] == "vessel_unet.pth" and len(judge["sha256"]) == 64
    (a,) = _checkpoints(tmp_path, "l1-s0-a", 1)
    (b,) = _checkpoints(tmp_path, "l2-s0-b", 1)
    results = pd.DataFrame([{"trial": "l1-s0-a", "status": "done", "checkpoint": str(a), "segmenter": "ridge"},
                            {"trial": "l2-s0-b", "status": "done", "checkpoint": str(b), "segmenter": "ridge"}])
    notes = tmp_path / "eval" / "notes.json"
    notes.parent.mkdir()
    notes.write_text(json.dumps({"segmenter": "ridge fallback", "segmenter_id": {"name": "ridge", "sha256": None}}))
    plan = plan_evaluation(tmp_path, results, judge, recorded_judge(str(notes)))
    assert sorted(plan.trials["trial"]) == ["l1-s0-a", "l2-s0-b"]  # the whole experiment, not the new rows
    assert any("segmenter changed since the last evaluation (ridge -> vessel_unet.pth" in n for n in plan.notes)
    same = plan_evaluation(tmp_path, results, judge, judge)
    assert not any("segmenter changed" in n for n in same.notes)


# ---------------------------------------------------------------- finding 8: TensorBoard stopped with us


@pytest.mark.fault
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_f8_tensorboard_child_stopped_when_ablate_is_killed(tmp_path, sig):
    """SIGKILL reaches no handler of ours: the kernel's parent-death signal stops TensorBoard (issue 25)."""
    (tmp_path / "exp" / "tensorboard" / "t").mkdir(parents=True)
    pid_file = tmp_path / "tb.pid"
    fake = tmp_path / "tensorboard"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 120\n")
    fake.chmod(0o755)
    code = textwrap.dedent(f"""
        import ablate.report.cli as c
        c.tensorboard_command = lambda *a, **k: [{str(fake)!r}]
        from ablate.cli import app
        app(["tensorboard", {str(tmp_path / "exp")!r}])
    """)
    ablate = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    end = time.time() + 30
    while not (pid_file.is_file() and pid_file.read_text().strip()) and time.time() < end:
        time.sleep(0.1)
    child = int(pid_file.read_text())
    ablate.send_signal(sig)
    ablate.wait(timeout=20)
    end = time.time() + 15
    while time.time() < end:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail(f"TensorBoard (PID {child}) outlived `ablate tensorboard` stopped by {sig.name}")
    assert ablate.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 128 + sig)


# ---------------------------------------------------------------- finding 9: loopback only


@pytest.mark.ray
def test_f9_local_ray_listens_on_loopback_only(tmp_path):
    """Every listening socket of the Ray that `start_ray` starts, measured (psutil comes with Ray)."""
    code = textwrap.dedent("""
        import json, os
        from ablate.runtime import start_ray
        import ray
        assert start_ray(None)
        ray.get(ray.remote(lambda: 1).remote())  # a worker process up too
        import psutil
        me = psutil.Process()
        seen = []
        for p in [me, *me.children(recursive=True)]:
            try:
                seen += [[p.name(), c.laddr.ip, c.laddr.port] for c in p.net_connections(kind="inet")
                         if c.status == psutil.CONN_LISTEN]
            except psutil.Error:
                pass
        print(json.dumps(seen))
        ray.shutdown()
    """)
    env = {**os.environ, "ABLATE_RAY_TMP": f"/tmp/ablate-lo-{os.getpid()}"}  # short: Ray's socket paths
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    sockets = json.loads(r.stdout.strip().splitlines()[-1])
    names = {n for n, _, _ in sockets}
    assert any("gcs_server" in n for n in names) and any("raylet" in n for n in names), sockets
    exposed = [s for s in sockets if s[1] not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    assert not exposed, f"listening beyond loopback: {exposed}"


@pytest.mark.fault
def test_f1_folder_holding_only_a_killed_launchs_lock_is_launchable_and_rechecked_under_the_lock(tmp_path):
    """A launch killed before it wrote grid.json leaves only its lock file: a fresh launch into
    the folder is not refused as 'not empty'; anything else in it still is."""
    from ablate.config import ConfigError, find_grid, load_grid
    from ablate.train.experiment import check_experiment_folder

    grid = load_grid(find_grid("smoke"))
    out = tmp_path / "exp"
    out.mkdir()
    (out / LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": "gone"}))
    check_experiment_folder(out, grid, resume=False)  # accepted
    (out / "stray.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        check_experiment_folder(out, grid, resume=False)


@pytest.mark.bad_input
def test_f7_evaluate_names_a_wrong_shaped_grid_json(tmp_path):
    from ablate.config import ConfigError
    from ablate.evaluate.run import EvalOptions, evaluate_experiment

    exp = tmp_path / "exp"
    exp.mkdir()
    pd.DataFrame({"trial": ["a"], "status": ["done"], "checkpoint": [None]}).to_parquet(exp / "results.parquet")
    (exp / "grid.json").write_text(json.dumps({"name": 3, "trials": []}))
    with pytest.raises(ConfigError, match="grid.json"):
        evaluate_experiment(EvalOptions(exp=str(exp)))


def test_fp16_grad_scaler_state_is_checkpointed_and_restored(tmp_path, monkeypatch):
    """An fp16 run restarted from its checkpoint goes on at the loss scale its GradScaler had
    found (not 65536 again, which would skip steps while it climbs down)."""
    import torch

    from ablate.models.checkpoint import read_checkpoint, write_checkpoint
    from ablate.models.presets import build_model
    from ablate.train import loop

    model = build_model("tiny", 32, {})
    opt = torch.optim.Adam(model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=65536.0)
    scaler.scale(torch.ones(()))  # the scale exists from the first scaled loss on
    scaler.update(new_scale=512.0)  # as after a few overflowing steps
    folder = tmp_path / "train" / "l1-s0-a" / "checkpoint_2026-01-01_00-00-00.000000"
    folder.mkdir(parents=True)
    write_checkpoint(folder, model_state=model.state_dict(), optimizer_state=opt.state_dict(), step=6, spec=SPEC,
                     grad_scaler_state=scaler.state_dict())
    assert read_checkpoint(folder)["grad_scaler"]["scale"] == 512.0
    monkeypatch.setattr(loop, "restored_location", lambda: str(folder))
    fresh = torch.amp.GradScaler("cpu", init_scale=65536.0)
    worker = SimpleNamespace(device=torch.device("cpu"), rank=0, model=model, opt=opt, d_opt=None, scaler=fresh,
                             spec=SimpleNamespace(combination="l1", seed=0))
    assert loop.WorkerRun._restore(worker) == 6
    assert fresh.get_scale() == 512.0
    # bf16 / fp32 runs have no scaler and their checkpoints carry none.
    plain = tmp_path / "plain"
    plain.mkdir()
    write_checkpoint(plain, model_state=model.state_dict(), optimizer_state=opt.state_dict(), step=6, spec=SPEC)
    assert "grad_scaler" not in read_checkpoint(plain)
