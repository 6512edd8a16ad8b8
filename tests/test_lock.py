"""The experiment lock (ablate.lock): one writer per experiment folder, a local flock or an S3 lease, stale locks taken over, malformed ones named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ablate.lock import LOCK_FILE, ExperimentLocked, experiment_lock
from tests.helpers.text import one_line
from tests.s3_server import BUCKET

# ---------------------------------------------------------------- finding 1: one writer

@pytest.mark.fault
def test_second_writer_refused_naming_holder(tmp_path):
    """Finding F1 (issue 20): Second writer refused naming holder."""

    with experiment_lock(tmp_path, "ablate launch --grid smoke"), pytest.raises(ExperimentLocked) as e, \
            experiment_lock(tmp_path, "ablate evaluate"):
        pass
    msg = str(e.value)
    assert "'ablate launch --grid smoke'" in msg and f"PID {os.getpid()}" in msg
    assert "host " + os.uname().nodename in msg and "since 20" in msg


@pytest.mark.fault
def test_report_command_refused_while_a_launch_writes(tmp_path):
    """Finding F1 (issue 20): Report command refused while a launch writes."""

    from typer.testing import CliRunner

    from ablate.cli import app

    with experiment_lock(tmp_path, "ablate launch --grid smoke"):
        r = CliRunner().invoke(app, ["report", str(tmp_path), "--images", "0"])
    assert r.exit_code != 0
    assert "another ablate command is writing this experiment" in r.output and "launch --grid smoke" in r.output


@pytest.mark.fault
def test_stale_lock_of_a_dead_pid_taken_over_with_message(tmp_path, capsys):
    """Finding F1 (issue 20): Stale lock of a dead pid taken over with message."""

    (tmp_path / LOCK_FILE).write_text(json.dumps({"user": "x", "host": os.uname().nodename, "pid": 2 ** 22 + 12345,
                                                  "command": "ablate launch --grid old", "since": 1.0e9}))
    with experiment_lock(tmp_path, "ablate launch --grid new"):
        rec = json.loads((tmp_path / LOCK_FILE).read_text())
    err = capsys.readouterr().err
    assert "taking over a stale lock" in err and f"PID {2 ** 22 + 12345}" in err and "process is gone" in err
    assert rec["pid"] == os.getpid() and rec["command"] == "ablate launch --grid new"


@pytest.mark.fault
def test_lock_released_after_the_command_and_on_exception(tmp_path):
    """Finding F1 (issue 20): Lock released after the command and on exception."""

    with experiment_lock(tmp_path, "a"):
        assert (tmp_path / LOCK_FILE).is_file()
    assert not (tmp_path / LOCK_FILE).exists()  # nothing left in the experiment folder
    with pytest.raises(RuntimeError), experiment_lock(tmp_path, "b"):
        raise RuntimeError("boom")
    with experiment_lock(tmp_path, "c"):  # free again
        pass
    assert not (tmp_path / LOCK_FILE).exists()


@pytest.mark.fault
def test_lock_held_by_another_process_is_refused(tmp_path):
    """Finding F1 (issue 20): flock between processes (the case of two `ablate launch`), and freed when the holder dies."""
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
def test_s3_lease_refuses_a_second_writer_takes_over_a_stale_one_and_is_released(s3, capsys):
    """Finding F1 (issue 20): S3 lease refuses a second writer takes over a stale one and is released."""

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
        with pytest.raises(ExperimentLocked, match=r"'ablate launch --grid s3'.*PID"), \
                experiment_lock(exp, "ablate report", heartbeat_s=0.2):
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
    # Just written: a live writer may hold it (heartbeat 30 s: stale after 120 s).
    with pytest.raises(ExperimentLocked) as e, experiment_lock(exp, "ablate evaluate"):
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
