"""A trial's prior Train run reported to Tune (ablate.train.prior_feed): each report of the
run reaches the trial as the prior stage's progress, keeping the autoencoder's step and
checkpoint path, and the live view shows it as "prior k/N"."""

from __future__ import annotations

import pytest

from tests.helpers.console import grid_view

AE_FINAL = {"step": 100, "final": True, "val/psnr": 30.0, "checkpoint_path": "/exp/train/l1-s0/checkpoint_2"}
PRIOR_REPORT = {"prior/loss": 3.0, "prior/val_loss": 3.25, "step": 400, "epoch": 7, "final": False, "world_size": 2}


class PriorCheckpoint:  # what Ray Train hands a callback with a report that saved one
    path = "/exp/samples/l1-s0/prior/train/prior-l1-s0/checkpoint_1"


def test_each_prior_report_reaches_tune_as_progress_with_the_autoencoders_step_and_checkpoint():
    pytest.importorskip("ray")
    from ray.tune.integration.ray_train import TuneReportCallback

    from ablate.train.prior_feed import PriorProgressToTune

    class Queue:  # the Tune session's queue, which the trial reads its reports from
        def __init__(self):
            self.items = []

        def put(self, item):
            self.items.append(item)

    # Tune's own callback, as the trial makes it, minus the Tune session it needs to be made.
    # (Its queue attribute is Ray 2.60's, pinned in pyproject.)
    to_tune = TuneReportCallback.__new__(TuneReportCallback)
    to_tune._training_actor_item_queue = queue = Queue()
    cb = PriorProgressToTune(AE_FINAL, steps_total=600, samples_total=32, to_tune=to_tune)
    cb.after_report(None, [PRIOR_REPORT, {**PRIOR_REPORT, "prior/loss": 3.1}], PriorCheckpoint())
    cb.after_report(None, [{"config_error": "not a step report"}], None)  # no step: nothing to show
    assert queue.items == [{**AE_FINAL, "prior.stage": "training", "prior.step": 400, "prior.steps_total": 600,
                            "prior.samples_total": 32, "prior.loss": 3.0, "prior.val_loss": 3.25}]

    view, _, _ = grid_view()
    view.trial_started("l1-s0")
    view.trial_result("l1-s0", AE_FINAL)
    view.trial_result("l1-s0", queue.items[0])
    row = view.rows["l1-s0"]
    assert row.status_text() == "prior 400/600" and row.step == 100 and row.prior_val_loss == 3.25


@pytest.mark.ray
def test_a_grid_trial_shows_its_prior_stage_live_and_its_results_row_stays_the_autoencoders(
        ray_local, drive32, tmp_path, capsys):
    import pandas as pd

    from ablate.config import find_grid
    from ablate.pipeline import LaunchOptions, launch

    text = find_grid("synthesis").read_text()
    text = text.replace("steps: 40", "steps: 12").replace("steps: 60", "steps: 12").replace("samples: 32", "samples: 8")
    text = text.replace("checkpoint_every: 30", "checkpoint_every: 6")
    grid = tmp_path / "synthesis.yaml"
    grid.write_text(text)
    out = tmp_path / "exp"
    launch(LaunchOptions(grid=str(grid), data=str(drive32), out=str(out), only=("base",), evaluate=False))

    lines = [ln[9:] for ln in capsys.readouterr().out.splitlines() if ln[9:].startswith("base-s0 ")]
    wanted = ["base-s0 autoencoder done at step 12; prior: encoding codes", "base-s0 prior: training 12 steps",
              "base-s0 prior 6/12 (50%)", "base-s0 prior 12/12 (100%)", "base-s0 prior: drawing 8 samples",
              "base-s0 done: 12 steps"]
    at = [next((i for i, ln in enumerate(lines) if ln.startswith(w)), None) for w in wanted]
    assert None not in at and at == sorted(at), "\n".join(lines)
    assert "; prior 12 steps, val loss " in lines[at[-1]] and ", 8 samples (1/1 done" in lines[at[-1]]
    # The trial's last Tune report is the autoencoder's final one with the prior's figures.
    df = pd.read_parquet(out / "results.parquet")
    row = df.iloc[0]
    assert row["status"] == "done" and row["steps"] == 12 and row["prior.steps"] == 12 and row["prior.samples"] == 8
    assert "/samples/" not in row["checkpoint"] and "/train/" in row["checkpoint"]  # the autoencoder's
    assert not {"prior.stage", "prior.step", "prior.steps_total"} & set(df.columns)
