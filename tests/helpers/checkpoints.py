"""Checkpoint folders written as training writes them, for the tests of finding and loading
a trial's checkpoints (models/test_checkpoint, evaluate/test_plan, train/test_loop)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

# The part of a trial spec a checkpoint records: the tiny model at 32 px.
TINY_32PX_SPEC = SimpleNamespace(model=SimpleNamespace(preset="tiny", overrides={}, edge_channel=None),
                                 data=SimpleNamespace(size=32))


def write_trial_checkpoints(exp: Path, trial: str, n: int, record: bool = True) -> list[Path]:
    """`n` checkpoint folders of a trial's Ray Train run, oldest first, written as training does.

    Args:
        exp: the experiment folder (they go under exp/train/<trial>/).
        trial: the trial's name.
        n: how many (steps 3, 6, 9, ...).
        record: False deletes each folder's record file (a checkpoint of an older version).
    """
    from ablate.models.checkpoint import CHECKPOINT_FILE, RECORD_FILE, write_checkpoint
    from ablate.models.presets import build_model

    model = build_model("tiny", 32, {})
    out = []
    for k in range(n):
        folder = exp / "train" / trial / f"checkpoint_2026-01-01_00-00-0{k}.000000"
        folder.mkdir(parents=True)
        write_checkpoint(folder, model_state=model.state_dict(), optimizer_state={}, step=3 * (k + 1),
                         spec=TINY_32PX_SPEC)
        if not record:
            (folder / RECORD_FILE).unlink()
        assert (folder / CHECKPOINT_FILE).is_file()
        out.append(folder)
    return out
