"""The evaluation plan (ablate.evaluate.plan): one judge per evaluation; a changed segmenter re-evaluates every trial."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.helpers.checkpoints import write_trial_checkpoints

# ---------------------------------------------------------------- finding 14: one judge


@pytest.mark.fault
def test_changed_segmenter_reevaluates_every_trial_and_is_recorded(tmp_path):
    """Finding F14 (issue 20): Changed segmenter reevaluates every trial and is recorded."""

    from ablate.evaluate.plan import plan_evaluation, recorded_judge, segmenter_identity

    unet = tmp_path / "vessel_unet.pth"
    unet.write_bytes(b"weights")
    judge = segmenter_identity(str(unet))
    assert judge["name"] == "vessel_unet.pth" and len(judge["sha256"]) == 64
    (a,) = write_trial_checkpoints(tmp_path, "l1-s0-a", 1)
    (b,) = write_trial_checkpoints(tmp_path, "l2-s0-b", 1)
    results = pd.DataFrame([{"trial": "l1-s0-a", "status": "done", "checkpoint": str(a), "segmenter": "ridge"},
                            {"trial": "l2-s0-b", "status": "done", "checkpoint": str(b), "segmenter": "ridge"}])
    notes = tmp_path / "eval" / "notes.json"
    notes.parent.mkdir()
    notes.write_text(json.dumps({"segmenter": "ridge fallback", "segmenter_id": {"name": "ridge", "sha256": None}}))
    plan = plan_evaluation(tmp_path, results, judge, recorded_judge(str(notes)))
    assert sorted(plan.trials["trial"]) == ["l1-s0-a", "l2-s0-b"]  # the whole experiment, not the new rows
    assert any("segmenter changed since the last evaluation (ridge -> vessel_unet.pth" in n for n in plan.notes)
    same = plan_evaluation(tmp_path, results, judge, judge)
    assert not any("segmenter changed" in n for n in same.notes)
