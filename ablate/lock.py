"""One writer per experiment: `launch`, `evaluate` and `report` hold an exclusive lock on
the experiment while they write it (finding 1 of issue 20: two launches on one --out
left two Tune states, and a later --resume rewrote finished trials).

- A local folder: `fcntl.flock` on EXP/.ablate.lock, which the kernel releases when the
  holder dies (even by SIGKILL); the file also holds a JSON record of the holder (user,
  host, PID, command, start time) so a refusal can name it. The file is removed on
  release, so a finished command leaves nothing behind; a file left by a killed holder
  is taken over with a message.
- Object storage (`s3://`, …): a lease object EXP/.ablate.lock.json with the same record
  and a heartbeat, refreshed by a background thread; a lease whose heartbeat is older
  than STALE_AFTER heartbeats is taken over with a message. S3 has no lock; on `s3://`
  the lease is created with a conditional write (`If-None-Match: *`) and refreshed or
  taken over with `If-Match: <etag>`, so of two writers the second's write fails and it is
  refused. Where the store does not offer conditional writes (other schemes, an S3 clone
  without them) the lease is read-then-written: two writers starting within one round
  trip of each other can both believe they hold it. That is said in a warning.

A holder's record that cannot be read (not JSON, binary bytes, a PID that is not a number,
missing keys) proves nothing about a live holder, so it is never what decides:
- locally the kernel's flock decides: if it is free, no ablate command holds the
  experiment and the file is taken over, with a line naming it and what was wrong;
- on object storage the lease's own last-modified time stands in for its heartbeat (a live
  holder rewrites it every heartbeat): written within STALE_AFTER heartbeats, it is refused,
  naming the lease; older, it is taken over with a line naming it.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import math
import os
import socket
import sys
import threading
import time
from pathlib import Path

from ablate import storage
from ablate.storage import StorageError

logger = logging.getLogger(__name__)

LOCK_FILE = ".ablate.lock"
LEASE_FILE = ".ablate.lock.json"
HEARTBEAT_S = 30.0
STALE_AFTER = 4  # heartbeats missed before a lease counts as abandoned

__all__ = ["LEASE_FILE", "LOCK_FILE", "ExperimentLocked", "command_line", "describe_holder", "experiment_lock", "holder_record"]


class ExperimentLocked(StorageError):
    """Another writer holds the experiment; the message names it."""


def command_line() -> str:
    """This process's command as typed (`ablate launch --grid smoke`), for the lock's record."""
    import shlex

    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"


def holder_record(command: str) -> dict:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry: said as its uid
        user = f"uid {os.getuid()}"
    now = time.time()
    return {"user": user, "host": socket.gethostname(), "pid": os.getpid(), "command": command,
            "since": now, "heartbeat": now}


def describe_holder(rec: dict) -> str:
    """The holder in words, from a record _parse() checked (a field it dropped shows as '?')."""
    since = rec.get("since")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since is not None else "?"
    return (f"{rec.get('command', '?')!r} by {rec.get('user', '?')} on host {rec.get('host', '?')}, "
            f"PID {rec.get('pid', '?')}, since {since}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


_TEXT = ("user", "host", "command")
_TIMES = ("since", "heartbeat")
LOCAL_KEYS = ("pid", "host")  # what a local takeover reads (is its process gone?)
LEASE_KEYS = ("pid", "host", "heartbeat")  # a lease's heartbeat decides; pid and host say whose it is at release
MAX_TIME = 4.0e9  # seconds since 1970 (year 2096): beyond it, a time is garbage, and localtime() overflows


def _parse(raw: bytes, required: tuple[str, ...]) -> tuple[dict, str]:
    """(record, problem). The record keeps only well-formed fields; problem is '' for a whole
    record (or an empty file: a holder that has not written yet), else what is wrong with it: not
    JSON, a field of the wrong type, or a missing one of those the caller decides on (`required`)."""
    if not raw.strip():
        return {}, ""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return {}, "binary bytes, not JSON"
    except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError; deep nesting recurses
        return {}, f"not JSON ({str(err)[:60]})"
    if not isinstance(rec, dict):
        return {}, f"a JSON {type(rec).__name__}, not an object"
    good, bad = {}, []
    for key in ("pid", *_TEXT, *_TIMES):
        if key not in rec:
            bad += [f"{key} missing"] if key in required else []
            continue
        value = rec[key]
        if key == "pid":
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2 ** 31
        elif key in _TEXT:
            ok = isinstance(value, str)
        else:
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                  and 0 <= value < MAX_TIME)
        if ok:
            good[key] = value
        else:
            bad.append(f"{key}={value!r:.30}")
    return good, ("unusable fields: " + ", ".join(bad)) if bad else ""


# ---------------------------------------------------------------- a local folder


class _FileLock:
    def __init__(self, folder: Path, command: str):
        self.path = Path(folder) / LOCK_FILE
        self.command = command
        self.fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                rec, problem = _parse(os.pread(fd, 65536, 0), LOCAL_KEYS)
                os.close(fd)
                who = (f"a holder whose record is unreadable: {problem}" if problem else
                       describe_holder(rec) if rec else "a process that has not written its record yet")
                raise ExperimentLocked(f"{self.path.parent}: another ablate command is writing this experiment "
                                       f"({who}); wait for it to finish, or stop it (lock: {self.path})") from None
            # A releaser unlinks the file after we opened it: our lock is on a dead inode; retry.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        old, problem = _parse(os.pread(fd, 65536, 0), LOCAL_KEYS)
        if problem:  # the flock was free: whatever the record says, no live ablate command holds it
            logger.warning(f"{self.path}: taking over a lock whose record is unreadable ({problem}): its lock "
                           "was no longer held, so no ablate command is writing this experiment")
        elif old:
            here = old["host"] == socket.gethostname()
            why = "its process is gone" if here and not _pid_alive(old["pid"]) else "its lock was no longer held"
            logger.warning(f"{self.path.parent}: taking over a stale lock from {describe_holder(old)}: {why}")
        data = json.dumps(holder_record(self.command)).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        # Unlink while still holding it, so nobody takes a lock on a file about to vanish
        # (acquire() checks the inode it locked is still the file's).
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)  # closing releases the flock
        self.fd = None


# ---------------------------------------------------------------- object storage


class _Lease:
    def __init__(self, uri: str, command: str, heartbeat_s: float = HEARTBEAT_S, stale_after: int = STALE_AFTER):
        self.uri = storage.join(uri, LEASE_FILE)
        self.exp = uri
        self.command = command
        self.heartbeat_s = heartbeat_s
        self.stale_after = stale_after
        self.rec = holder_record(command)
        self.etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None
        self._s3 = self._s3_client() if self.uri.startswith("s3://") else None
        if self._s3 is None:
            logger.warning(f"warning: {self.uri}: this store offers no conditional writes here; the lease is "
                           "read then written, so two writers starting within a second of each other can both take it")

    @staticmethod
    def _s3_client():
        # The conditional writes need boto3 (pyarrow's S3 file system does not expose them);
        # it is the `s3` extra, so a plain install says how to get it. botocore, imported
        # below, comes with boto3.
        try:
            import boto3
        except ImportError:
            raise StorageError("an s3:// experiment needs boto3 for its one-writer lease: "
                               "pip install 'ablate[s3]'") from None
        return boto3.client("s3")

    def _bucket_key(self) -> tuple[str, str]:
        bucket, _, key = self.uri[len("s3://"):].partition("/")
        return bucket, key

    def _read(self) -> tuple[dict, str | None, str, float | None] | None:
        """(record, etag, problem, last-modified time) of the lease now in the store (see _parse), or
        None when there is none."""
        if self._s3 is None:
            if not storage.is_file(self.uri):
                return None
            fs, path = storage.resolve(self.uri)
            modified = fs.get_file_info(path).mtime
            rec, problem = _parse(storage.read_bytes(self.uri), LEASE_KEYS)
            return rec, None, problem, modified.timestamp() if modified else None
        from botocore.exceptions import ClientError

        bucket, key = self._bucket_key()
        try:
            got = self._s3.get_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise StorageError(f"{self.uri}: cannot read the lease ({e})") from None
        rec, problem = _parse(got["Body"].read(), LEASE_KEYS)
        return rec, got["ETag"], problem, got["LastModified"].timestamp()

    def _write(self, *, if_match: str | None = None, create: bool = False) -> bool:
        """Write our record; False when the condition failed (someone else wrote first)."""
        self.rec["heartbeat"] = time.time()
        body = json.dumps(self.rec).encode()
        if self._s3 is None:
            storage.write_bytes(self.uri, body)
            return True
        from botocore.exceptions import ClientError

        bucket, key = self._bucket_key()
        cond = {"IfNoneMatch": "*"} if create else ({"IfMatch": if_match} if if_match else {})
        try:
            put = self._s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **cond)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return False
            raise StorageError(f"{self.uri}: cannot write the lease ({e})") from None
        self.etag = put["ETag"]
        return True

    def acquire(self) -> None:
        for _ in range(3):  # a lost race re-reads the lease once or twice
            now = self._read()
            if now is None:
                if self._write(create=True):
                    break
                continue
            rec, etag, problem, modified = now
            window = self.stale_after * self.heartbeat_s
            if problem:  # the record proves nothing: its last write stands in for the heartbeat
                if modified is None:
                    raise ExperimentLocked(f"{self.uri}: the lease's record is unreadable ({problem}) and this store "
                                           "gives no time it was written; delete it if no ablate command is writing "
                                           f"{self.exp}")
                age = time.time() - modified
                if age <= window:
                    raise ExperimentLocked(f"{self.uri}: the lease's record is unreadable ({problem}) and it was "
                                           f"written {age:.0f} s ago, so a writer may hold it; retry in "
                                           f"{window - age + 1:.0f} s (it is taken over then), or stop that writer")
                logger.warning(f"{self.uri}: taking over a lease whose record is unreadable ({problem}): not "
                               f"written for {age:.0f} s (over {self.stale_after} x {self.heartbeat_s:g} s)")
            else:
                age = time.time() - rec.get("heartbeat", 0)
                if age <= window:
                    raise ExperimentLocked(f"{self.exp}: another ablate command is writing this experiment "
                                           f"({describe_holder(rec)}; last heartbeat {age:.0f} s ago); wait for it "
                                           f"to finish, or stop it (lease: {self.uri})")
                logger.warning(f"{self.exp}: taking over a stale lease from {describe_holder(rec)}: no heartbeat "
                               f"for {age:.0f} s (over {self.stale_after} x {self.heartbeat_s:g} s)")
            if self._write(if_match=etag):
                break
        else:
            raise ExperimentLocked(f"{self.exp}: another writer took the lease {self.uri} while this one tried to")
        self._thread = threading.Thread(target=self._beat, name="ablate-lease-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                ok = self._write(if_match=self.etag)
            except StorageError as e:  # a network blip: said, retried at the next beat
                logger.warning(f"warning: {e}; retrying in {self.heartbeat_s:g} s")
                continue
            if not ok:
                self.lost = f"{self.uri}: the lease was taken by another writer"
                logger.warning(f"warning: {self.lost}; this command no longer holds the experiment")
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.lost:
            return  # another writer's lease now: not ours to delete
        mine = self._read()
        if mine is not None and mine[0].get("pid") == self.rec["pid"] and mine[0].get("host") == self.rec["host"]:
            self._delete()

    def _delete(self) -> None:
        if self._s3 is not None:
            bucket, key = self._bucket_key()
            self._s3.delete_object(Bucket=bucket, Key=key)
        else:
            fs, path = storage.resolve(self.uri)
            fs.delete_file(path)


@contextlib.contextmanager
def experiment_lock(exp: Path | str, command: str, *, heartbeat_s: float = HEARTBEAT_S, create: bool = False):
    """`with experiment_lock(out, "launch --grid smoke"):` holds the experiment for this
    command; raises ExperimentLocked naming the holder when another writer has it.
    `create`: make a missing local folder (a launch's new experiment)."""
    if not storage.is_uri(exp) and not Path(exp).expanduser().is_dir() and not create:
        # `evaluate` / `report` on a folder that is not there: nothing to guard, and the
        # command's own check names the missing folder (a lock would create it empty).
        yield None
        return
    lock = _Lease(storage.normalize(exp), command, heartbeat_s) if storage.is_uri(exp) \
        else _FileLock(Path(exp).expanduser().resolve(), command)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()
