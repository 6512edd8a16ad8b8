"""The experiment folder's record of its grid (grid.json), and the rules that keep one
grid per folder: no mixing grids, no starting over a finished run, no resuming nothing.
`out` is a local folder or a URI (s3://bucket/prefix) throughout."""

from __future__ import annotations

import json
from pathlib import Path

from ablate import storage
from ablate.config import ConfigError, Grid
from ablate.train.driver import trial_key

GRID_RECORD = "grid.json"  # the resolved trials of the experiment in this folder


def grid_fingerprint(grid: Grid, data: str | None = None) -> dict:
    """What makes two launches the same experiment (compared on --resume)."""
    return {"name": grid.name, "data": data, "trials": {trial_key(s): s.flat() for s in grid.trials}}


def grid_record(grid: Grid, data: str | None = None) -> dict:
    """grid.json: the fingerprint, plus the questions' pre-declared primary metrics for the
    report (not compared on --resume: they change no trial)."""
    return {**grid_fingerprint(grid, data), "questions": grid.questions}


def check_experiment_folder(out: Path | str, grid: Grid, resume: bool, data: str | None = None) -> None:
    """Refuse to mix grids in one folder, to start over a finished run, or to resume nothing.
    `out` is a local folder or a URI (s3://bucket/prefix)."""
    record = storage.join(out, GRID_RECORD)
    if not storage.is_file(record):
        if resume:
            raise ConfigError(f"--resume: {out} holds no experiment to resume (no {GRID_RECORD}); drop --resume to start it")
        if storage.has_entries(out):
            raise ConfigError(f"--out {out} is not empty and holds no ablate experiment; choose another folder")
        return
    try:
        previous = json.loads(storage.read_text(record))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{record}: unreadable ({e})") from None
    mine = json.loads(json.dumps(grid_fingerprint(grid, data), default=str))  # same JSON types as the record
    if {k: previous.get(k) for k in mine} != mine:
        added = sorted(set(mine["trials"]) - set(previous.get("trials", {})))
        removed = sorted(set(previous.get("trials", {})) - set(mine["trials"]))
        changed = sorted(k for k in set(mine["trials"]) & set(previous.get("trials", {}))
                         if mine["trials"][k] != previous["trials"][k])
        data_note = "" if previous.get("data") == data else f", data {previous.get('data')} -> {data}"
        raise ConfigError(
            f"--out {out} holds a different grid ({previous.get('name')!r}): trials added {added}, removed {removed}, "
            f"changed {changed}{data_note}. Use another --out, or the same grid, data and options to resume."
        )
    if not resume:
        raise ConfigError(f"--out {out} already holds this grid; add --resume to continue it (finished trials are kept)")
