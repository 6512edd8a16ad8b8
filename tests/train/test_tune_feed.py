"""Tune's events to the live view (ablate.train.tune_feed): the callback feeds the view and names a failed trial's log."""

from __future__ import annotations

from typing import ClassVar

import pytest

from tests.helpers.console import grid_view


def test_tune_callback_feeds_the_view_and_names_a_failed_trials_log(tmp_path):
    pytest.importorskip("ray")
    from ablate.train.tune_feed import LiveViewCallback

    view, out, _ = grid_view()
    folder, working = tmp_path / "driver_artifacts" / "l1-s0-abc", tmp_path / "working_dirs" / "l1-s0-abc"
    folder.mkdir(parents=True)
    working.mkdir(parents=True)
    (working / "stderr").write_text("worker output\n")
    (folder / "error.txt").write_text("Traceback (most recent call last):\n  File x\nValueError: bad batch\n")

    class FakeTrial:  # what the callback reads of a Tune Trial
        config: ClassVar[dict] = {"trial": "l1-s0"}
        status = "RUNNING"
        local_path = path = str(folder)  # Tune's folder of the trial in Ray's session
        storage = type("Storage", (), {"trial_working_directory": str(working)})  # the trainable's folder
        error_file = str(folder / "error.txt")
        last_result: ClassVar[dict] = {"step": 100, "final": True}

        def __str__(self):
            return "l1-s0-abc"

    logs = tmp_path / "exp" / "logs"
    class KeptTrial:  # finished in an earlier launch of a resumed grid
        config: ClassVar[dict] = {"trial": "l2-s0"}
        status = "TERMINATED"
        last_result: ClassVar[dict] = {"step": 100, "final": True, "val/psnr": 22.5}

    cb, t = LiveViewCallback(view, logs), FakeTrial()
    cb.on_trial_start(iteration=1, trials=[t, KeptTrial()], trial=t)
    assert view.rows["l2-s0"].status == "done" and view.rows["l2-s0"].psnr == 22.5
    assert "1/2 done, 1 running, 0 pending" in out.getvalue()
    cb.on_trial_result(iteration=2, trials=[t], trial=t, result={"step": 50, "val/psnr": 21.0})
    cb.on_trial_error(iteration=3, trials=[t], trial=t)
    line = next(ln for ln in out.getvalue().splitlines() if "FAILED" in ln)
    saved = logs / "trials"
    assert f"ValueError: bad batch; log: {saved / 'l1-s0-abc.stderr'} and {saved / 'l1-s0-abc.error.txt'}" in line
    assert (saved / "l1-s0-abc.stderr").read_text() == "worker output\n"  # the copy in the experiment
    assert view.rows["l1-s0"].step == 50
    # Tune pickles its callbacks into tuner.pkl (under pytest stdout is not picklable): the
    # view stays behind, and an unpickled copy (a resumed grid's old callback) shows nothing.
    import pickle

    copy = pickle.loads(pickle.dumps(cb))
    assert copy.view is None and copy.logs_dir == logs
    copy.on_trial_start(iteration=4, trials=[t], trial=t)
