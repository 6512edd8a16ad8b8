"""The experiment folder's record of its grid (grid.json), and the rules that keep one
grid per folder: no mixing grids, no starting over a finished run, no resuming nothing.
`out` is a local folder or a URI (s3://bucket/prefix) throughout."""

from __future__ import annotations

import json
from pathlib import Path

from ablate import storage
from ablate.data.identity import RECORD_KEY, check_same_dataset
from ablate.experiment_layout import LOCK_FILES, ExperimentLayout
from ablate.schemas import GridRecord, problem
from ablate.specs import ConfigError, Grid
from ablate.train.driver import trial_key


def grid_fingerprint(grid: Grid, data: str | None = None) -> dict:
    """What makes two launches the same experiment (compared on --resume)."""
    fingerprint = {"name": grid.name, "data": data, "trials": {trial_key(s): s.flat() for s in grid.trials}}
    if grid.tune is not None:  # a tuned grid: the same searches too (a plain grid's record has no `tune`)
        fingerprint["tune"] = grid.tune.record()
    return fingerprint


def grid_record(grid: Grid, data: str | None = None, launched: list[str] | None = None,
                data_hash: str | None = None) -> dict:
    """grid.json: the fingerprint of the whole search space, the trials launched into this
    folder so far (`--only` runs add theirs), the questions' pre-declared primary metrics
    for the report, and the dataset's identity (`data_hash`, its manifest's sha256). The
    fingerprint and the dataset's identity are compared on a later launch. As its JSON object
    (write_record writes it)."""
    fingerprint = grid_fingerprint(grid, None if data is None else str(data))
    return GridRecord(**fingerprint, launched=sorted(launched or []), questions=grid.questions,
                      manifest_sha256=data_hash).model_dump(mode="json")  # RECORD_KEY's field


def write_record(out: Path | str, record: dict) -> None:
    """Write grid.json into `out` (a folder or URI): `record` (grid_record's, or a record read
    back with a key added) checked against GridRecord first, so no launch writes one that the
    next launch or the report would refuse."""
    storage.write_text(ExperimentLayout(out).grid, GridRecord.model_validate(record).to_json())


def read_record(out: Path | str) -> dict | None:
    return read_checked(ExperimentLayout(out).grid, GridRecord, "a grid record")


def read_checked(path: str, model, what: str) -> dict | None:
    """A JSON file `ablate launch` writes and reads back (grid.json, search/chosen.json), checked
    against its schema; None where it is absent, a ConfigError naming the file and key where
    it is unreadable or of another shape.

    Args:
        path: the file (a local path or URI).
        model: its pydantic model (ablate.schemas).
        what: what the file is, for the message ("a grid record").
    """
    if not storage.is_file(path):
        return None
    try:
        value = json.loads(storage.read_text(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: unreadable ({e})") from None
    wrong = problem(value, model)
    if wrong:
        raise ConfigError(f"{path}: {wrong}; not {what} `ablate launch` wrote")
    return value


def record_dataset(out: Path | str, data_hash: str) -> bool:
    """Add the dataset's identity to a grid.json written before ablate kept it (on --resume,
    once the launch has accepted the data): later resumes and evaluations then compare it.
    True when the record was rewritten."""
    previous = read_record(out)
    if previous is None or previous.get(RECORD_KEY) is not None:
        return False
    write_record(out, {**previous, RECORD_KEY: data_hash})
    return True


def launched_before(previous: dict | None) -> list[str]:
    """Trials a folder's earlier launches ran (a record from before `--only` ran them all)."""
    if previous is None:
        return []
    return list(previous.get("launched", previous.get("trials", {})))


def _entries_besides_lock(out: Path | str) -> bool:
    """The folder holds something other than a writer's lock (ours, held now, or one a killed
    launch left before it wrote grid.json: `experiment_lock` takes that over)."""
    if not storage.is_uri(out):
        p = Path(out)
        return p.exists() and any(e.name not in LOCK_FILES for e in p.iterdir())
    return any(name not in LOCK_FILES for name in storage.list_files(out))


def check_experiment_folder(out: Path | str, grid: Grid, resume: bool, data: str | None = None,
                            launching: list[str] | None = None, data_hash: str | None = None) -> None:
    """Refuse to mix grids in one folder, to start over trials already launched there, or to
    resume nothing. `grid` is the whole search space; `launching` the trials of this launch
    (default: all). Launching other trials of the same grid into the folder adds them (`--only`).
    `data_hash` (the dataset's manifest sha256, ablate.data.identity): given, a folder launched
    on another manifest under the same path is refused too, naming both hashes.
    `out` is a local folder or a URI (s3://bucket/prefix)."""
    record = ExperimentLayout(out).grid
    if not storage.is_file(record):
        if resume:
            raise ConfigError(f"--resume: {out} holds no experiment to resume (no grid.json); drop --resume to start it")
        if _entries_besides_lock(out):
            raise ConfigError(f"--out {out} is not empty and holds no ablate experiment; choose another folder")
        return
    previous = read_record(out)
    if previous is None:
        raise ConfigError(f"{record}: removed while this launch was reading it; launch again")
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
    again = sorted(set(launching if launching is not None else mine["trials"]) & set(launched_before(previous)))
    if again and not resume:
        raise ConfigError(f"--out {out} already holds trials {again} of this grid; add --resume to continue it "
                          "(finished trials are kept), or launch other combinations with --only")
    if data_hash is not None:
        assert data is not None  # data_hash is the hash of `data`'s manifest: callers give both
        check_same_dataset(previous, data, out, "--resume" if resume else "launch --only", now=data_hash)
