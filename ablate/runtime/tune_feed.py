"""Ray Tune's trial events, fed to the grid's live view (`live_view.GridView`).

Tune calls these from its control loop in the driver; each trial is found by the
grid key it carries in its config (`trial`), which is the view's row.
"""

from __future__ import annotations

from pathlib import Path

from ray.tune import Callback

from ablate.runtime.live_view import GridView


def trial_logs(trial) -> str | None:
    """Where a trial's output went: its stderr file (`RunConfig(log_to_file=True)`) and the
    traceback Tune wrote, as one string for the user to open."""
    folder = trial.local_path or trial.path
    files = [str(Path(folder, "stderr"))] if folder and Path(folder, "stderr").is_file() else []
    if trial.error_file:
        files.append(trial.error_file)
    return " and ".join(files) or None


def error_line(trial) -> str | None:
    """The last line of the trial's traceback (the exception itself), cut to one line."""
    path = trial.error_file
    if not path or not Path(path).is_file():
        return None
    lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else None


class LiveViewCallback(Callback):
    def __init__(self, view: GridView):
        self.view = view

    @staticmethod
    def _key(trial) -> str:
        return trial.config["trial"]

    def on_trial_start(self, iteration, trials, trial, **info):
        self.view.trial_started(self._key(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.view.trial_result(self._key(trial), result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.view.trial_finished(self._key(trial), trial.last_result)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.view.trial_retrying(self._key(trial), error_line(trial), trial_logs(trial))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.view.trial_failed(self._key(trial), error_line(trial), trial_logs(trial))
