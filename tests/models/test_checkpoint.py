"""The checkpoint format (ablate.models.checkpoint): size and sha256 recorded with each
checkpoint; a truncated or damaged one is named and the trial's earlier one used; one without
a record loads and is said unverified."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from tests.helpers.checkpoints import TINY_32PX_SPEC, write_trial_checkpoints

# ---------------------------------------------------------------- finding 5: verified checkpoints

def _truncate(folder: Path) -> Path:
    f = folder / "checkpoint.pt"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return f


def test_checkpoint_records_size_and_sha256(tmp_path):
    """Finding F5 (issue 20): Checkpoint records size and sha256."""

    from ablate.io import sha256_file
    from ablate.models.checkpoint import verify_checkpoint

    (ck,) = write_trial_checkpoints(tmp_path, "l1-s0-a", 1)
    rec = json.loads((ck / "checkpoint.json").read_text())
    assert rec == {"file": "checkpoint.pt", "size": (ck / "checkpoint.pt").stat().st_size,
                   "sha256": sha256_file(ck / "checkpoint.pt")}
    assert verify_checkpoint(ck) == "verified"


@pytest.mark.fault
def test_truncated_checkpoint_named_and_the_earlier_one_used(tmp_path):
    """Finding F5 (issue 20): Truncated checkpoint named and the earlier one used."""

    from ablate.evaluate.plan import plan_evaluation

    a_old, a_new = write_trial_checkpoints(tmp_path, "l1-s0-a", 2)
    (b_only,) = write_trial_checkpoints(tmp_path, "l2-s0-b", 1)
    (c_ok,) = write_trial_checkpoints(tmp_path, "ssim-s0-c", 1)
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
def test_checkpoint_without_record_is_loadable_and_said_unverified(tmp_path):
    """Finding F5 (issue 20): Checkpoint without record is loadable and said unverified."""

    from ablate.models.checkpoint import CheckpointCorrupt, usable_checkpoint, verify_checkpoint

    old, new = write_trial_checkpoints(tmp_path, "l1-s0-a", 2, record=False)
    assert verify_checkpoint(new) == "unverified"
    folder, notes = usable_checkpoint(new, "l1-s0-a")
    assert folder == str(new) and "unverified" in notes[0]
    _truncate(new)  # without a record, a damaged file is found by loading it
    with pytest.raises(CheckpointCorrupt, match="cannot be loaded"):
        verify_checkpoint(new)
    assert usable_checkpoint(new, "l1-s0-a")[0] == str(old)


@pytest.mark.fault
def test_damaged_bytes_of_the_same_size_fail_the_hash(tmp_path):
    """Finding F5 (issue 20): Damaged bytes of the same size fail the hash."""

    from ablate.models.checkpoint import CheckpointCorrupt, verify_checkpoint

    (ck,) = write_trial_checkpoints(tmp_path, "l1-s0-a", 1)
    f = ck / "checkpoint.pt"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointCorrupt, match="sha256 differs"):
        verify_checkpoint(ck)


@pytest.mark.fault
def test_resume_from_a_truncated_latest_checkpoint_uses_the_previous_one(tmp_path, monkeypatch, capsys):
    """Finding F5 (issue 20): The Train worker's restore (a worker-group restart or --resume): the latest checkpoint
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
        write_checkpoint(folder, model_state=model.state_dict(), optimizer_state=opt.state_dict(), step=step, spec=TINY_32PX_SPEC)
        folders.append(folder)
    bad = _truncate(folders[1])
    monkeypatch.setattr(loop, "restored_location", lambda: str(folders[1]))
    worker = SimpleNamespace(device=torch.device("cpu"), rank=0, model=model, opt=opt, d_opt=None, scaler=None,
                             spec=SimpleNamespace(combination="l1", seed=0))
    assert loop.WorkerRun._restore(worker) == 4  # the previous checkpoint's step, not a crash, not step 0
    err = capsys.readouterr().err
    assert f"corrupt checkpoint {bad}" in err and f"using its earlier checkpoint {folders[0]}" in err
