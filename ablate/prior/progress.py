"""Where a trial's prior stage stands, as the reports that tell Tune (and so the grid's live
view) while it runs: encoding the codes, training the prior (step k of N), drawing the
samples. Minutes pass in each, after the autoencoder's last report.

Each such report repeats the autoencoder's final metrics and checkpoint path, so whatever
report is a trial's last (a prior stage that failed part way included) the results table
reads the trial's steps, status and checkpoint from it; the view tells these reports from
the autoencoder's by their `prior.stage` key. The stage's own final report (driver.py) has
no `prior.stage`: it is the autoencoder's final one with the prior's figures.

Imports neither Ray nor torch (the live view reads these keys).
"""

from __future__ import annotations

from enum import Enum

STAGE = "prior.stage"  # a PriorStage's value: the report is the prior stage's progress
STEP = "prior.step"  # the prior's optimizer steps done
STEPS_TOTAL = "prior.steps_total"  # the steps it trains in all
SAMPLES_TOTAL = "prior.samples_total"  # the samples it draws
LOSS, VAL_LOSS = "prior.loss", "prior.val_loss"


class PriorStage(str, Enum):
    ENCODING = "encoding"  # the train and val splits to code grids
    TRAINING = "training"  # the prior's Train run
    DRAWING = "drawing"  # the samples


def progress_report(base: dict, stage: PriorStage, *, steps_total: int, samples_total: int, step: int | None = None,
                    loss: float | None = None, val_loss: float | None = None) -> dict:
    """One progress report of a trial's prior stage.

    Args:
        base: the autoencoder's final metrics with its `checkpoint_path`, repeated.
        stage: where the stage stands.
        steps_total, samples_total: the prior's steps and samples in all.
        step, loss, val_loss: the prior's latest Train report (training only).
    """
    out = {**base, STAGE: stage.value, STEPS_TOTAL: int(steps_total), SAMPLES_TOTAL: int(samples_total)}
    if step is not None:
        out[STEP] = int(step)
    for key, value in ((LOSS, loss), (VAL_LOSS, val_loss)):
        if value is not None:
            out[key] = float(value)
    return out
