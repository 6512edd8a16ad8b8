"""Which trials an evaluation scores, from which checkpoint, and with which judge: decided
before any Ray task starts, and said.

- Checkpoints are verified first (models/checkpoint.py: size and sha256 against the
  record written beside them). A corrupt one is named with its trial; the trial's
  previous checkpoint is used where one verifies, else the trial is left out and the
  other trials are still evaluated (issue 20, finding 5).
- The vessel segmenter is the judge of the vessel metrics. Its identity (name and the
  sha256 of its file) is recorded in eval/notes.json. Every evaluation scores every
  finished trial with one judge, so when the judge changes (a U-Net trained since the
  ridge fallback was used) the whole experiment is re-evaluated with the new one and
  that is said; metrics from two judges never sit side by side (finding 14). We chose
  re-evaluating over refusing: the user asked for an evaluation, and scoring every trial
  again is what makes the new numbers comparable; the old judge is named in the note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ablate import storage


@dataclass
class EvalPlan:
    trials: pd.DataFrame  # the rows to evaluate; `checkpoint` is the folder to load (verified)
    notes: list[str] = field(default_factory=list)  # said on the console and kept in eval/notes.json
    skipped: list[str] = field(default_factory=list)  # trials left out: no checkpoint verifies
    fallbacks: dict = field(default_factory=dict)  # trial -> the earlier checkpoint used instead


def segmenter_identity(spec: str) -> dict:
    """{name, sha256}: the ridge fallback has no file (sha256 None); a U-Net is its file's hash."""
    if spec == "ridge":
        return {"name": "ridge", "sha256": None}
    path = Path(spec).expanduser()
    return {"name": path.name, "sha256": storage.sha256(path) if path.is_file() else None}


def recorded_judge(notes_path: str) -> dict | None:
    """The segmenter identity an earlier evaluation recorded in its notes.json (None before
    identities were recorded, or with no earlier evaluation)."""
    if not storage.is_file(notes_path):
        return None
    try:
        notes = json.loads(storage.read_text(notes_path))
    except json.JSONDecodeError:
        return None  # unreadable notes are rewritten by this evaluation; nothing to compare
    judge = notes.get("segmenter_id") if isinstance(notes, dict) else None
    return judge if isinstance(judge, dict) else None


def plan_evaluation(exp, results: pd.DataFrame, judge: dict, previous_judge: dict | None) -> EvalPlan:
    """Every finished trial with a checkpoint, each from its newest checkpoint that verifies."""
    from ablate.models.checkpoint import locate_checkpoint, usable_checkpoint

    done = results[(results["status"] == "done") & results["checkpoint"].notna()]
    plan = EvalPlan(trials=done.iloc[0:0].copy())
    if previous_judge is not None and (previous_judge.get("name"), previous_judge.get("sha256")) != \
            (judge.get("name"), judge.get("sha256")):
        plan.notes.append(f"segmenter changed since the last evaluation ({_judge(previous_judge)} -> {_judge(judge)}): "
                          f"every trial is re-evaluated with {judge.get('name')}, so all vessel metrics come from one "
                          "judge")
    rows = []
    for row in done.to_dict("records"):
        recorded = locate_checkpoint(exp, row["checkpoint"])
        if recorded is None:
            plan.notes.append(f"{row['trial']}: its checkpoint {row['checkpoint']} is not there; not evaluated")
            plan.skipped.append(row["trial"])
            continue
        folder, notes = usable_checkpoint(recorded, row["trial"])
        plan.notes.extend(notes)
        if folder is None:
            plan.skipped.append(row["trial"])
            continue
        if folder != str(recorded):
            plan.fallbacks[row["trial"]] = folder
        rows.append({**row, "checkpoint": folder})
    plan.trials = pd.DataFrame(rows, columns=done.columns)
    return plan


def _judge(j: dict) -> str:
    return j.get("name", "?") + (f" sha256 {j['sha256'][:12]}" if j.get("sha256") else "")


MAX_JUDGE_RESAMPLING = 2.0  # beyond this the U-Net's maps are outside what its Dice was measured on


def judge_scale_caution(judge, size: int) -> str | None:
    """A caution when the U-Net judges images far from the size it was trained at: it resamples
    them to its own size, so a 64 px reconstruction reaches a 512 px network 8x enlarged,
    blurrier than any shift it was measured under (BENCHMARKS.md). Seen on a real 64 px run:
    vessel-free, blurred reconstructions came out as broad 'vessel' blobs. None within 2x,
    or for a segmenter without a training size (the ridge fallback)."""
    trained = getattr(judge, "size", None)
    if not trained or not size:
        return None
    ratio = max(trained / size, size / trained)
    if ratio <= MAX_JUDGE_RESAMPLING:
        return None
    return (f"vessel maps of {size} px images by {judge.name}, trained at {trained} px ({ratio:g}x resampled): "
            f"outside the range its Dice was measured in, so vessel metrics of blurred reconstructions may "
            f"count broad dark regions as vessel; for these sizes train one at {size} px "
            f"(`ablate segmenter train --data <DRIVE prepared at {size} px>`)")
