"""The grid's checkpoint format, in one place: what a trial's checkpoint holds, how it
is written, read (from a local folder or a URI) and turned back into a model.

A checkpoint is a folder (Ray Train's) holding `checkpoint.pt`, a torch file with:
    model           the autoencoder's state_dict
    optimizer       its Adam state
    step            optimizer steps done
    model_spec      plain values enough to rebuild the model from the file alone:
                    {preset, overrides, edge_channel, size}
    loss_state, disc_optimizer   only with an adversarial term (the discriminator)
"""

from __future__ import annotations

import io
from pathlib import Path

from ablate import storage

CHECKPOINT_FILE = "checkpoint.pt"


def model_spec(spec) -> dict:
    """The `model_spec` entry for a TrialSpec."""
    return {"preset": spec.model.preset, "overrides": dict(spec.model.overrides),
            "edge_channel": spec.model.edge_channel, "size": spec.data.size}


def write_checkpoint(folder: Path, *, model_state: dict, optimizer_state: dict, step: int, spec,
                     loss_state: dict | None = None, disc_optimizer_state: dict | None = None) -> None:
    """Write `checkpoint.pt` into `folder` (a temporary folder Ray Train then persists)."""
    import torch

    state = {"model": model_state, "optimizer": optimizer_state, "step": step, "model_spec": model_spec(spec)}
    if loss_state is not None:
        state["loss_state"] = loss_state
        state["disc_optimizer"] = disc_optimizer_state
    torch.save(state, Path(folder) / CHECKPOINT_FILE)


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
    from ablate.models.presets import build_model

    ms = state["model_spec"]
    edge = parse_edge_channel(ms["edge_channel"]) if ms["edge_channel"] else None
    model = build_model(ms["preset"], ms["size"], ms["overrides"], in_channels=4 if edge else 3).to(device)
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
    for cand in (Path(exp) / "train" / p.parent.name / p.name, p):
        if (cand / CHECKPOINT_FILE).is_file():
            return cand
    return None
