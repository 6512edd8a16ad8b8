"""The grid's checkpoint format, in one place: what a trial's checkpoint holds, how it
is written, read (from a local folder or a URI) and turned back into a model.

A checkpoint is a folder (Ray Train's) holding `checkpoint.pt`, a torch file with:
    model           the autoencoder's state_dict
    optimizer       its Adam state
    step            optimizer steps done
    model_spec      plain values enough to rebuild the model from the file alone:
                    {preset, overrides, edge_channel, size}
    loss_state, disc_optimizer   only with an adversarial term (the discriminator)
    grad_scaler     only in fp16: the GradScaler's state (its current loss scale and growth
                    count), so a restart goes on at the scale it had found instead of
                    skipping steps while it climbs down again from 65536
and, written after it, `checkpoint.json`: {file, size, sha256} of checkpoint.pt, so a
reader can tell a truncated or damaged file from a good one before loading it (issue 20,
finding 5). A checkpoint from before the record existed is "unverified": checked by
loading it.
"""

from __future__ import annotations

import io
from pathlib import Path

from ablate import storage
from ablate.errors import AblateError
from ablate.experiment_layout import ExperimentLayout

CHECKPOINT_FILE = "checkpoint.pt"
RECORD_FILE = "checkpoint.json"


class CheckpointCorrupt(AblateError, ValueError):
    """A checkpoint file fails its record (size, sha256) or cannot be loaded; the message names it."""


def model_spec(spec) -> dict:
    """The `model_spec` entry for a TrialSpec."""
    return {"preset": spec.model.preset, "overrides": dict(spec.model.overrides),
            "edge_channel": spec.model.edge_channel, "size": spec.data.size}


def write_checkpoint(folder: Path, *, model_state: dict, optimizer_state: dict, step: int, spec,
                     loss_state: dict | None = None, disc_optimizer_state: dict | None = None,
                     grad_scaler_state: dict | None = None) -> None:
    """Write `checkpoint.pt` into `folder` (a temporary folder Ray Train then persists)."""
    import torch

    state = {"model": model_state, "optimizer": optimizer_state, "step": step, "model_spec": model_spec(spec)}
    if loss_state is not None:
        state["loss_state"] = loss_state
        state["disc_optimizer"] = disc_optimizer_state
    if grad_scaler_state:
        state["grad_scaler"] = grad_scaler_state
    path = Path(folder) / CHECKPOINT_FILE
    torch.save(state, path)
    write_record(folder)


def write_record(folder: Path) -> dict:
    """checkpoint.json for the checkpoint.pt in `folder` (a local folder), written after it."""
    import json

    from ablate.io import sha256_file

    path = Path(folder) / CHECKPOINT_FILE
    rec = {"file": CHECKPOINT_FILE, "size": path.stat().st_size, "sha256": sha256_file(path)}
    (Path(folder) / RECORD_FILE).write_text(json.dumps(rec) + "\n")
    return rec


def verify_checkpoint(folder: Path | str) -> str:
    """"verified" (checkpoint.pt matches its record) or "unverified" (no record: a checkpoint
    from before records; it loaded). Raises CheckpointCorrupt naming the file otherwise."""
    import json

    path = storage.join(folder, CHECKPOINT_FILE)
    record = storage.join(folder, RECORD_FILE)
    if not storage.is_file(path):
        raise CheckpointCorrupt(f"{path}: missing")
    if not storage.is_file(record):
        try:
            read_checkpoint(folder)
        except Exception as e:  # noqa: BLE001  any failure to load is what this check is for; named below
            raise CheckpointCorrupt(f"{path}: cannot be loaded ({type(e).__name__}: {str(e)[:200]})") from None
        return "unverified"
    try:
        rec = json.loads(storage.read_text(record))
        size, digest = int(rec["size"]), str(rec["sha256"])
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointCorrupt(f"{record}: unreadable record ({type(e).__name__}: {e})") from None
    actual = storage.list_files(folder).get(CHECKPOINT_FILE)
    if actual != size:
        raise CheckpointCorrupt(f"{path}: {actual} bytes, its record says {size} (truncated or damaged)")
    if storage.sha256(path) != digest:
        raise CheckpointCorrupt(f"{path}: sha256 differs from its record (damaged)")
    return "verified"


def earlier_checkpoints(folder: Path | str) -> list[str]:
    """The other checkpoint_* folders of the same Ray Train run that hold a checkpoint.pt,
    newest first, older than `folder` (Ray Train keeps several: CheckpointConfig)."""
    parent, name = (storage.split(str(folder)) if storage.is_uri(folder)
                    else (str(Path(folder).parent), Path(folder).name))
    found = {rel.split("/")[0] for rel in storage.list_files(parent) if rel.count("/") == 1
             and rel.endswith("/" + CHECKPOINT_FILE) and rel.startswith("checkpoint_")}
    return [storage.join(parent, n) for n in sorted(found, reverse=True) if n < name]


def usable_checkpoint(folder: Path | str, trial: str) -> tuple[str | None, list[str]]:
    """(the newest checkpoint of `trial` from `folder` back that verifies, or None; notes to say).
    A corrupt checkpoint is named with its trial; an earlier one used in its place is said."""
    notes = []
    for cand in [str(folder), *earlier_checkpoints(folder)]:
        try:
            state = verify_checkpoint(cand)
        except CheckpointCorrupt as e:
            notes.append(f"{trial}: corrupt checkpoint {e}")
            continue
        if cand != str(folder):
            notes.append(f"{trial}: using its earlier checkpoint {cand} instead")
        if state == "unverified":
            notes.append(f"{trial}: checkpoint {cand} has no {RECORD_FILE} (written before records): unverified, "
                         "it loads")
        return cand, notes
    notes.append(f"{trial}: no valid checkpoint left; not evaluated")
    return None, notes


def has_checkpoint(folder: Path | str) -> bool:
    return storage.is_file(storage.join(folder, CHECKPOINT_FILE))


def read_checkpoint(folder: Path | str, device: str = "cpu") -> dict:
    """The state in `folder`/checkpoint.pt. A URI is read into memory by whoever calls this:
    on a cluster the reader may sit on a node that never saw the experiment folder, and
    every node can reach the bucket."""
    import torch

    path = storage.join(folder, CHECKPOINT_FILE)
    source = io.BytesIO(storage.read_bytes(path)) if storage.is_uri(path) else path
    return torch.load(source, map_location=device, weights_only=True)


def rebuild_model(state: dict, device: str = "cpu"):
    """(autoencoder in eval mode with the checkpoint's weights, its edge channel or None)."""
    from ablate.models.edge_channel import parse_edge_channel
    from ablate.models.presets import build_with_edge

    ms = state["model_spec"]
    edge = parse_edge_channel(ms["edge_channel"]) if ms["edge_channel"] else None
    model = build_with_edge(ms["preset"], ms["size"], ms["overrides"], edge).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    return model, edge


def locate_checkpoint(exp: Path, path) -> Path | str | None:
    """The checkpoint folder results.parquet recorded for a trial, looked up where it is
    now: on object storage as recorded; locally under the experiment folder first (it may
    have been moved since), else at the recorded path. None when neither holds one."""
    if not isinstance(path, str) or not path:
        return None
    if storage.is_uri(path):
        return path if has_checkpoint(path) else None
    p = Path(path)
    for cand in (Path(ExperimentLayout(exp).train, p.parent.name, p.name), p):
        if (cand / CHECKPOINT_FILE).is_file():
            return cand
    return None
