"""One base for every user error (ablate.errors.AblateError), caught in one place.

Every exception class ablate defines is a user error (bad input or environment the user can
fix) and inherits AblateError beside the builtin it had before; the command line's typer
group (ablate.ui.console.Commands) turns any of them, from any command, into the one
line `error: MESSAGE` on stderr with exit status 2, as each command's own `except` tuple did.
Anything else is a bug and keeps its traceback. The library's log lines (ablate.logs) reach
the terminal as the print() calls they replaced did: the message alone, on the same stream."""

from __future__ import annotations

import ast
import builtins
import importlib
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ablate.errors import AblateError
from tests.helpers import REPO as ROOT

PACKAGE = ROOT / "ablate"
# Exception classes that are not user errors, each with why.
NOT_USER_ERRORS = {
    "ablate.report.cli._Stopped",  # a signal stopping `ablate tensorboard`, caught where it is raised
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def exception_classes() -> list[str]:
    """`module.Class` of every exception class defined in ablate/, found in the source: a class
    whose base is a builtin exception or, transitively, another exception class found here."""
    known = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}
    classes = []  # (qualified name, its name, the names of its bases)
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases]
                classes.append((f"{_module(path)}.{node.name}", node.name, bases))
    found: set[str] = set()
    while True:
        more = {q for q, name, bases in classes if q not in found and any(b in known for b in bases)}
        if not more:
            return sorted(found)
        found |= more
        known |= {q.rsplit(".", 1)[1] for q in more}


def load(qualified: str) -> type:
    module, name = qualified.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


USER_ERRORS = [q for q in exception_classes() if q not in NOT_USER_ERRORS]


def test_the_source_scan_finds_the_error_classes():
    names = set(USER_ERRORS)
    assert {"ablate.specs.ConfigError", "ablate.storage.StorageError", "ablate.lock.ExperimentLocked",
            "ablate.weights.WeightsMissing", "ablate.weights.table.WeightsHashMismatch",
            "ablate.data.guard.TooManyPixels", "ablate.errors.InvalidInput"} <= names
    assert len(names) >= 20 and set(NOT_USER_ERRORS) <= set(exception_classes())


@pytest.mark.parametrize("qualified", USER_ERRORS)
def test_every_error_class_is_a_user_error_and_keeps_its_builtin_base(qualified):
    cls = load(qualified)
    assert issubclass(cls, AblateError), f"{qualified} does not inherit ablate.errors.AblateError"
    if cls is not AblateError:  # `except ValueError` / `except OSError` elsewhere still catch it
        assert any(b.__module__ == "builtins" and b not in (Exception, BaseException, object)
                   for b in cls.__mro__), f"{qualified}: no builtin base (ValueError, OSError, ...) beside AblateError"


def _raiser(exc: BaseException):
    def raise_it(*_args, **_kwargs):
        raise exc
    return raise_it


@pytest.mark.parametrize("qualified", USER_ERRORS)
def test_the_command_line_turns_every_user_error_into_one_line_and_exit_2(qualified, tmp_path, monkeypatch):
    from ablate.cli import app

    msg = f"{tmp_path}/grid.yaml: base.train.steps: must be >= 1, got 0 (give a positive number)"
    monkeypatch.setattr("ablate.report.publish.write_report", _raiser(load(qualified)(msg)))
    r = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert r.stderr == f"error: {msg}\n" and r.stdout == "", r.output


# Every command of `ablate` (and `ablate fm`, `ablate segmenter`): the function it calls raises
# a bare AblateError, which no command's own `except` tuple named before.
COMMANDS = {
    "prepare": (["prepare", "{tmp}", "--out", "{tmp}/out"], "ablate.data.shards.prepare"),
    "launch": (["launch", "--grid", "smoke"], "ablate.pipeline.launch"),
    "evaluate": (["evaluate", "{tmp}"], "ablate.evaluate.arguments.check_evaluation"),
    "report": (["report", "{tmp}"], "ablate.report.publish.write_report"),
    "tensorboard": (["tensorboard", "s3://bucket/exp", "--print-only"], "ablate.runtime.tensorboard.mirror_logs"),
    "fm pretrain": (["fm", "pretrain", "--data", "{tmp}"], "ablate.fm.pretrain.pretrain"),
    "segmenter train": (["segmenter", "train", "--data", "{tmp}"], "ablate.segmenter.train.train_segmenter"),
    "segmenter evaluate": (["segmenter", "evaluate", "--data", "{tmp}"], "ablate.segmenter.unet_file.load_segmenter"),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_gives_a_user_error_one_line_and_exit_2(command, tmp_path, monkeypatch):
    from ablate.cli import app

    argv, target = COMMANDS[command]
    msg = f"{tmp_path}/x.csv line 3: unknown split 'tset' (expected one of test, train, val)"
    monkeypatch.setattr(target, _raiser(AblateError(msg)))
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "cache"))
    r = CliRunner().invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert r.stderr == f"error: {msg}\n" and "Traceback" not in r.output, r.output


@pytest.mark.parametrize("program", ["fm", "segmenter"])
def test_a_program_group_invoked_alone_catches_user_errors_too(program, tmp_path, monkeypatch):
    """`ablate fm` / `ablate segmenter` as their own typer apps (how their tests invoke them)."""
    app = importlib.import_module(f"ablate.{program}.cli").app
    argv, target = COMMANDS[f"{program} {'pretrain' if program == 'fm' else 'train'}"]
    monkeypatch.setattr(target, _raiser(AblateError("a message naming the file")))
    r = CliRunner().invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in argv[1:]])
    assert r.exit_code == 2 and r.stderr == "error: a message naming the file\n", (r.output, r.exception)


BUG = """
import sys
import ablate.data.shards
def bug(*a, **k):
    raise ValueError("a bug in ablate, not the user's input")
ablate.data.shards.prepare = bug
from ablate.cli import app
app(["prepare", sys.argv[1], "--out", sys.argv[2]], prog_name="ablate")
"""


def test_an_error_that_is_not_a_user_error_keeps_its_traceback(tmp_path, monkeypatch):
    """A bare ValueError is a bug: `ablate prepare` once printed it as `error: ...` (its tuple named
    ValueError); now it is not caught, and the traceback says where it came from."""
    from ablate.cli import app

    monkeypatch.setattr("ablate.data.shards.prepare", _raiser(ValueError("a bug")))
    r = CliRunner().invoke(app, ["prepare", str(tmp_path), "--out", str(tmp_path / "out")])
    assert r.exit_code == 1 and isinstance(r.exception, ValueError) and "error: a bug" not in r.output
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "COLUMNS": "200", "TERM": "dumb"}
    p = subprocess.run([sys.executable, "-c", BUG, str(tmp_path), str(tmp_path / "out")], check=False, capture_output=True,
                       text=True, timeout=120, env=env)
    assert p.returncode == 1, p.stderr
    assert "Traceback" in p.stderr and "a bug in ablate, not the user's input" in p.stderr, p.stderr
    assert "error: a bug" not in p.stderr


def test_log_lines_are_the_message_alone_on_the_stream_print_used(capsys):
    from ablate.logs import setup_logging

    setup_logging()
    setup_logging()  # again (each command line does): still one line per record
    log = logging.getLogger("ablate.some.module")
    log.info("placement: 1 worker(s) x 2 CPU per trial (100%)")
    log.warning("warning: s3://b/exp: retrying in 30 s")
    log.debug("not shown")
    printed = capsys.readouterr()
    assert printed.out == "placement: 1 worker(s) x 2 CPU per trial (100%)\n"
    assert printed.err == "warning: s3://b/exp: retrying in 30 s\n"


def test_library_lines_reach_the_command_lines_streams(tmp_path, drive32):
    """In a real `ablate` process: an INFO line a library module logs (the dry run's placement,
    train/launch.py) on stdout, a WARNING (a stale lock taken over, runtime/lock.py) on stderr,
    each the message alone, as their print() calls printed them."""
    import json
    import os

    from ablate.lock import LOCK_FILE

    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "ABLATE_CACHE": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, "-m", "ablate.cli", "launch", "--grid", "smoke", "--data", str(drive32),
                        "--dry-run"], check=False, capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert any(ln.startswith("placement: ") for ln in p.stdout.splitlines()), p.stdout
    assert "placement: " not in p.stderr

    (tmp_path / LOCK_FILE).write_text(json.dumps({"user": "x", "host": os.uname().nodename, "pid": 2 ** 22 + 12345,
                                                  "command": "ablate launch --grid old", "since": 1.0e9}))
    p = subprocess.run([sys.executable, "-m", "ablate.cli", "report", str(tmp_path), "--images", "0"], check=False,
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 2 and "error: " in p.stderr, p.stderr  # no results.parquet: a user error
    assert any(ln.startswith(f"{tmp_path}: taking over a stale lock from") for ln in p.stderr.splitlines()), p.stderr
    assert "taking over" not in p.stdout
