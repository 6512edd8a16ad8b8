"""Ray Tune's trial events, fed to the grid's live view (`live_view.GridView`).

Tune calls these from its control loop in the driver; each trial is found by the
grid key it carries in its config (`trial`), which is the view's row.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ray.tune import Callback

from ablate.train.live_view import GridView


def save_trial_output(trial, logs_dir: Path | None) -> str | None:
    """Copy the trial's output (stdout and stderr: `RunConfig(log_to_file=True)` writes them in
    the trial's working folder in Ray's session, which is not the experiment) and the
    traceback Tune wrote to `logs_dir/trials/`; returns the paths for the user to open."""
    if logs_dir is None or not trial.local_path:
        return trial.error_file
    # The trainable writes in its working folder; Tune's driver writes the traceback in its own.
    working = trial.storage.trial_working_directory
    folder = Path(logs_dir, "trials")
    saved = []
    for name, where in (("stderr", working), ("stdout", working), ("error.txt", trial.local_path)):
        src = Path(where, name)
        if src.is_file() and src.stat().st_size:
            folder.mkdir(parents=True, exist_ok=True)
            dest = folder / f"{trial}.{name}"  # the trial's name, as in the experiment
            shutil.copyfile(src, dest)
            saved.append(str(dest))
    picked = [p for p in saved if not p.endswith(".stdout")]  # stdout is saved, stderr and the traceback named
    return " and ".join(picked) or None


def error_line(trial) -> str | None:
    """The last line of the trial's traceback (the exception itself), cut to one line."""
    path = trial.error_file
    if not path or not Path(path).is_file():
        return None
    lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else None


class LiveViewCallback(Callback):
    """Args:
        view: the grid's live view.
        logs_dir: local folder for the trials' output (EXP/logs, or its local stage for a URI).
    """

    def __init__(self, view: GridView, logs_dir: Path | None = None):
        self.view, self.logs_dir = view, logs_dir

    def __getstate__(self) -> dict:
        # Tune pickles the RunConfig's callbacks into tuner.pkl: the view (an open stream,
        # a live display) stays with this process; a restored copy shows nothing, and a
        # resumed launch brings its own view (`train_grid`).
        return {"view": None, "logs_dir": self.logs_dir}

    @staticmethod
    def _key(trial) -> str:
        return trial.config["trial"]

    def on_trial_start(self, iteration, trials, trial, **info):
        if self.view:
            for t in trials:  # a resumed grid: trials finished by an earlier launch are done, not pending
                if t.status == "TERMINATED" and self._key(t) in self.view.rows:
                    self.view.finished_before(self._key(t), t.last_result)
            self.view.trial_started(self._key(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.view:
            self.view.trial_result(self._key(trial), result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self.view:
            save_trial_output(trial, self.logs_dir)
            self.view.trial_finished(self._key(trial), trial.last_result)

    def on_trial_recover(self, iteration, trials, trial, **info):
        if self.view:
            self.view.trial_retrying(self._key(trial), error_line(trial), save_trial_output(trial, self.logs_dir))

    def on_trial_error(self, iteration, trials, trial, **info):
        if self.view:
            self.view.trial_failed(self._key(trial), error_line(trial), save_trial_output(trial, self.logs_dir))
