"""A trial's prior Train run, reported to Tune while it trains (the grid's live view shows
"prior k/N"): Ray Train calls its callbacks in the run's controller actor, and Tune's own
TuneReportCallback carries a report from there to the trial. Each report of the prior's run
goes on as the prior stage's progress (ablate/prior/progress.py), never as the run's own
metrics: the trial's reports keep the autoencoder's step and checkpoint path, not the prior's.
"""

from __future__ import annotations

from ray.train import UserCallback

from ablate.prior.progress import PriorStage, progress_report


class PriorProgressToTune(UserCallback):
    """Args:
        base: the autoencoder's final metrics with its `checkpoint_path` (every report repeats them).
        steps_total, samples_total: the prior's steps and samples in all.
        to_tune: what puts a report in the trial's Tune session (`after_report(context, [metrics],
            checkpoint)`); None: Tune's TuneReportCallback, made here, in the trial (a Tune session).
    """

    def __init__(self, base: dict, steps_total: int, samples_total: int, to_tune=None):
        if to_tune is None:
            from ray.tune.integration.ray_train import TuneReportCallback

            to_tune = TuneReportCallback()
        self.base, self.steps_total, self.samples_total, self.to_tune = base, steps_total, samples_total, to_tune

    def after_report(self, run_context, metrics, checkpoint):
        first = metrics[0] if metrics else {}
        if first.get("step") is None:
            return  # not one of the loop's step reports
        report = progress_report(self.base, PriorStage.TRAINING, steps_total=self.steps_total,
                                 samples_total=self.samples_total, step=first["step"], loss=first.get("prior/loss"),
                                 val_loss=first.get("prior/val_loss"))
        # No checkpoint: Tune's callback would put the prior's path in `checkpoint_path`, the autoencoder's.
        self.to_tune.after_report(run_context, [report], None)
