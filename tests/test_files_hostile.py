"""Issue 25, files the tool reads: weights named by the user, verification records, the weights
download, experiment locks and unloadable weight files. Each is refused or taken over with one
line naming the file, never a traceback, a hang or a silent pass; nothing the user named is
deleted. No Ray here: every check calls the code under test directly (or the `weights` CLI)."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from ablate.weights import WeightsMissing
from ablate.weights import table as weights
from ablate.weights.cli import app as weights_app
from ablate.weights.table import TABLE

VGG = TABLE["vgg16"]
HEADS = TABLE["lpips_vgg_heads"]  # ships in the lpips wheel: always present, so its record is read


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Every cache in a temporary folder; no override set."""
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "ablate"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for var in ("HF_HUB_CACHE", "HF_TOKEN", "HF_HUB_OFFLINE",
                *(e.env for e in TABLE.values() if e.env), *(e.url_env for e in TABLE.values() if e.url_env)):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def one_line(text: str) -> str:
    assert "\n" not in text.strip() and "Traceback" not in text, text
    return text


# ----------------------------------------------------------------------------- 1. `ablate weights verify`


@pytest.mark.bad_input
def test_verify_fails_on_a_named_file_that_is_missing_or_differs_from_the_table(caches, monkeypatch):
    runner = CliRunner()
    gone = caches / "elsewhere" / VGG.file
    monkeypatch.setenv(VGG.env, str(gone))
    r = runner.invoke(weights_app, ["verify", "vgg16"])
    assert r.exit_code == 1, r.output
    assert f"verify failed: vgg16: ${VGG.env} names {gone}, which does not exist" in r.output
    r = runner.invoke(weights_app, ["verify"])  # all files: the named-and-missing one still fails it
    assert r.exit_code == 1 and f"${VGG.env} names {gone}" in r.output

    gone.parent.mkdir()
    gone.write_bytes(b"not the torchvision file")  # exists, but its sha256 lacks the table's prefix 397923af
    r = runner.invoke(weights_app, ["verify", "vgg16"])
    assert r.exit_code == 1, r.output
    assert f"verify failed: vgg16: {gone} (named by ${VGG.env}) differs from the table" in r.output
    assert "397923af" in r.output
    assert gone.read_bytes() == b"not the torchvision file"  # the user's file: reported, never touched


@pytest.mark.bad_input
def test_verify_fails_on_a_file_asked_for_by_name_that_is_absent_but_not_on_files_never_fetched(caches):
    runner = CliRunner()
    r = runner.invoke(weights_app, ["verify", "vgg16"])  # asked for: absent is not verified
    assert r.exit_code == 1 and "verify failed: vgg16: not present" in r.output, r.output
    r = runner.invoke(weights_app, ["verify", "lpips_vgg_heads"])
    assert r.exit_code == 0, r.output


# ----------------------------------------------------------------------------- 3. verification records

GARBAGE_RECORDS = {
    "binary": b"\x00\xff\xfe\x80 not a record",
    "list": b"[1, 2, 3]",
    "deep": b"[" * 100_000,  # json recurses on nesting
    "wrong_type": json.dumps({"sha256": 5, "path": "/x", "size": 1, "mtime_ns": 1}).encode(),
    "missing_key": json.dumps({"sha256": "ab" * 32}).encode(),
    "not_hex": json.dumps({"sha256": "zz", "path": "/x", "size": 1, "mtime_ns": 1}).encode(),
}


@pytest.mark.bad_input
@pytest.mark.parametrize("kind", [*GARBAGE_RECORDS, "folder"])
def test_garbage_verification_record_is_one_line_naming_it_and_is_kept(caches, kind):
    record = weights.record_path(HEADS.name)
    record.parent.mkdir(parents=True)
    if kind == "folder":
        record.mkdir()
    else:
        record.write_bytes(GARBAGE_RECORDS[kind])
    with pytest.raises(WeightsMissing) as e:  # the file is not used: the record may have been its pin
        weights.locate(HEADS.name)
    msg = one_line(str(e.value))
    assert msg.startswith(f"{record}: the verification record of {HEADS.name}") and "unreadable" in msg
    assert "Delete that record" in msg and f"ablate weights verify {HEADS.name}" in msg

    runner = CliRunner()
    listed = runner.invoke(weights_app, [])  # the listing says so, and does not fail
    assert listed.exit_code == 0 and "UNREADABLE" in listed.output, listed.output
    checked = runner.invoke(weights_app, ["verify", HEADS.name])
    assert checked.exit_code == 1 and f"verify failed: {HEADS.name}: its verification record is unreadable" \
        in checked.output, checked.output
    assert record.is_dir() if kind == "folder" else record.read_bytes() == GARBAGE_RECORDS[kind]  # never rewritten

    if kind != "folder":  # the fix the message gives works
        record.unlink()
        assert runner.invoke(weights_app, ["verify", HEADS.name]).exit_code == 0
        assert weights.read_record(HEADS.name)["sha256"] == HEADS.sha256


# ----------------------------------------------------------------------------- 2. a server that never answers


@pytest.fixture
def silent(caches, monkeypatch):
    from tests.weights_servers import SilentServer

    server = SilentServer()
    monkeypatch.setenv("ABLATE_WEIGHTS_READ_TIMEOUT_S", "1")  # the default is 60 s: 1 s keeps the test short
    yield server
    server.stop()


def weight_files(caches) -> list[str]:
    """Every file in the torch and Hugging Face caches except huggingface_hub's own metadata (refs/, locks)."""
    return sorted(str(p.relative_to(caches)) for root in ("torch", "hf") for p in (caches / root).rglob("*")
                  if (p.is_file() or p.is_symlink()) and "/.locks/" not in str(p) and "/refs/" not in str(p))


@pytest.mark.fault
@pytest.mark.parametrize("name", ["vgg16", "retfound"])
def test_fetch_from_a_server_that_never_answers_fails_in_seconds_naming_the_url(silent, caches, monkeypatch, name):
    import time

    import huggingface_hub  # noqa: F401  (imports are not what is timed: a first torch import takes seconds here)
    import torch.hub  # noqa: F401

    monkeypatch.setenv(VGG.url_env, f"{silent.url}/models/{VGG.file}")
    monkeypatch.setenv("HF_ENDPOINT", silent.url)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    start = time.monotonic()
    r = CliRunner().invoke(weights_app, ["fetch", name])
    took = time.monotonic() - start
    assert r.exit_code == 1, r.output
    assert took < 10, took  # one read timeout (1 s here), not huggingface_hub's minutes of retries, not for ever
    assert silent.connections >= 1  # it did reach the server, which accepted and said nothing
    url = f"{silent.url}/models/{VGG.file}" if name == "vgg16" else f"{silent.url}/{TABLE[name].origin}/resolve/main"
    assert url in r.output and "sent nothing for 1 s" in r.output and "ABLATE_WEIGHTS_READ_TIMEOUT_S" in r.output
    assert "Traceback" not in r.output
    assert weight_files(caches) == []  # no partial file left in any cache


@pytest.mark.bad_input
def test_a_timeout_that_is_not_a_number_is_one_line_naming_the_variable(caches, monkeypatch):
    monkeypatch.setenv("ABLATE_WEIGHTS_READ_TIMEOUT_S", "soon")
    r = CliRunner().invoke(weights_app, ["fetch", "vgg16"])
    assert r.exit_code == 1 and "$ABLATE_WEIGHTS_READ_TIMEOUT_S='soon' is not a number of seconds" in r.output


# ----------------------------------------------------------------------------- 4. malformed experiment locks

GARBAGE_LOCKS = {
    "pid_not_a_number": json.dumps({"user": "x", "host": os.uname().nodename, "pid": "twelve",
                                    "command": "ablate launch", "since": 1.0e9, "heartbeat": 1.0e9}).encode(),
    "since_not_a_time": json.dumps({"user": "x", "host": "h", "pid": 7, "command": "c", "since": "yesterday",
                                    "heartbeat": 1.0e9}).encode(),
    "since_nan": b'{"user": "x", "host": "h", "pid": 7, "command": "c", "since": NaN, "heartbeat": 1}',
    "pid_huge": json.dumps({"user": "x", "host": os.uname().nodename, "pid": 10 ** 20, "command": "c",
                            "since": 1.0e9, "heartbeat": 1.0e9}).encode(),
    "missing_keys": b"{}",
    "not_json": b"pid=123 host=somewhere",
    "binary": bytes(range(256)),
    "deep": b"[" * 60_000,
    "a_list": b"[1, 2]",
}


@pytest.mark.fault
@pytest.mark.parametrize("kind", GARBAGE_LOCKS)
def test_malformed_stale_lock_is_taken_over_with_one_line_naming_it(tmp_path, capsys, kind):
    from ablate.lock import LOCK_FILE, experiment_lock

    lock = tmp_path / LOCK_FILE
    lock.write_bytes(GARBAGE_LOCKS[kind])  # left by a killed holder, or garbled: its flock is free
    with experiment_lock(tmp_path, "ablate launch --grid new"):
        rec = json.loads(lock.read_text())
    assert rec["pid"] == os.getpid() and rec["command"] == "ablate launch --grid new"
    assert not lock.exists()  # released as usual: the next command is not blocked
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"{lock}: taking over a lock whose record is unreadable (") and "no longer held" in err


@pytest.mark.fault
def test_malformed_lock_whose_flock_is_held_is_refused_naming_it(tmp_path):
    import fcntl

    from ablate.lock import LOCK_FILE, ExperimentLocked, experiment_lock

    lock = tmp_path / LOCK_FILE
    lock.write_bytes(GARBAGE_LOCKS["since_not_a_time"])
    with open(lock, "rb") as holder:  # a live holder (another open file: flock conflicts within one process too)
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(ExperimentLocked) as e, experiment_lock(tmp_path, "ablate report"):
            pass
    msg = one_line(str(e.value))
    assert f"(lock: {lock})" in msg and "record is unreadable: unusable fields: since='yesterday'" in msg
    assert lock.read_bytes() == GARBAGE_LOCKS["since_not_a_time"]  # not ours: untouched


@pytest.mark.fault
def test_malformed_s3_lease_is_refused_while_fresh_and_taken_over_once_stale(s3, capsys):
    import time

    import boto3

    from ablate.lock import LEASE_FILE, ExperimentLocked, experiment_lock
    from tests.s3_server import BUCKET

    exp, key = f"s3://{BUCKET}/garbled-lease", f"garbled-lease/{LEASE_FILE}"
    client = boto3.client("s3")
    client.put_object(Bucket=BUCKET, Key=key, Body=json.dumps({"pid": "x", "heartbeat": "soon"}).encode())
    with pytest.raises(ExperimentLocked) as e:  # just written: a live writer may hold it
        with experiment_lock(exp, "ablate evaluate"):  # heartbeat 30 s: stale after 120 s
            pass
    msg = one_line(str(e.value))
    assert msg.startswith(f"{exp}/{LEASE_FILE}: the lease's record is unreadable (unusable fields: pid='x'")
    assert "heartbeat='soon'" in msg and "retry in" in msg
    time.sleep(2.1)  # S3 keeps the write time to the second; stale after 4 x 0.2 s here
    with experiment_lock(exp, "ablate evaluate", heartbeat_s=0.2):
        got = json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        assert got["command"] == "ablate evaluate"
    err = capsys.readouterr().err
    assert f"{exp}/{LEASE_FILE}: taking over a lease whose record is unreadable" in err and "Traceback" not in err
    assert "Contents" not in client.list_objects_v2(Bucket=BUCKET, Prefix=key)  # released


# ----------------------------------------------------------------------------- 5. weights that cannot be loaded


def _unloadable(tmp_path) -> dict:
    import argparse
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"model": {}, "args": argparse.Namespace(lr=1)}, buf)  # RETFound's own habit: an object in the file
    return {"garbage": b"\x00\xffthis is not a weights file" * 50, "empty": b"",
            "truncated_zip": buf.getvalue()[: len(buf.getvalue()) // 2], "pickled_object": buf.getvalue()}


def assert_one_line_naming(err: BaseException, path, *fix: str) -> None:
    msg = one_line(str(err))
    assert msg.startswith(f"{path}: cannot be loaded as "), msg
    assert "weights_only=False" not in msg and "weights_only` set to `False`" not in msg  # never the unsafe advice
    for words in fix:
        assert words in msg, msg


@pytest.mark.bad_input
@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated_zip", "pickled_object"])
def test_unloadable_weights_are_one_line_naming_the_file_and_the_fix(caches, tmp_path, monkeypatch, kind):
    from ablate.backbones.inception import load_inception_script
    from ablate.backbones.lpips_heads import load_lpips_heads
    from ablate.backbones.retfound import frozen_vit
    from ablate.losses import LOSSES

    bad = tmp_path / f"{kind}.pth"
    bad.write_bytes(_unloadable(tmp_path)[kind])
    with pytest.raises(WeightsMissing) as e:  # LPIPS with `weights:` naming the file
        LOSSES.build("lpips", weights=str(bad))
    assert_one_line_naming(e.value, bad, "torchvision VGG16 weights", f"${VGG.env}", "ablate weights fetch vgg16")
    why = {"garbage": "not a torch weights file", "empty": "empty or truncated", "truncated_zip": "not a whole torch file",
           "pickled_object": "stores a Python object (argparse.Namespace)"}[kind]
    assert why in str(e.value)
    with pytest.raises(WeightsMissing) as e:
        load_lpips_heads(bad)
    assert_one_line_naming(e.value, bad, "LPIPS v0.1 VGG heads")
    with pytest.raises(WeightsMissing) as e:  # RETFound's loader (foundation loss, FD metric)
        frozen_vit(dict(img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2), True, bad, "retfound_mae")
    assert_one_line_naming(e.value, bad, "ViT checkpoint", "`weights` option of foundation")
    monkeypatch.setenv(TABLE["fundus_mae"].env, str(bad))  # our MAE, named by its variable
    with pytest.raises(WeightsMissing) as e:
        LOSSES.build("foundation", model="fundus_mae")
    assert_one_line_naming(e.value, bad, "fundus MAE checkpoint", "ablate fm pretrain")
    with pytest.raises(WeightsMissing) as e:  # FID's Inception (TorchScript)
        load_inception_script(bad)
    assert_one_line_naming(e.value, bad, "FID Inception", "$ABLATE_FID_INCEPTION_WEIGHTS")
    assert bad.read_bytes() == _unloadable(tmp_path)[kind]  # the user's file: reported, never touched


@pytest.mark.bad_input
@pytest.mark.parametrize("what", ["segmenter", "fundus_mae"])
def test_our_own_checkpoints_that_do_not_load_are_one_line_naming_the_file(tmp_path, what):
    """`ablate segmenter evaluate --weights` and the fundus MAE loader read garbage as one line
    naming the file and how to make a good one, not torch's weights_only advice."""
    from ablate.weights.load import WeightsUnreadable

    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"\x80\x04not a torch file at all" * 10)
    if what == "segmenter":
        from ablate.segmenter.unet_file import load_segmenter as load
        fix = "ablate segmenter train"
    else:
        from ablate.fm.mae import load_mae as load
        fix = "ablate fm pretrain"
    with pytest.raises(WeightsUnreadable) as e:
        load(bad)
    msg = str(e.value)
    assert str(bad) in msg and fix in msg and "\n" not in msg and "weights_only" not in msg
