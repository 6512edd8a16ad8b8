"""The console of issue #19: the grid's live view (plain lines off a terminal, a table on
one), Ray's output sent to EXP/logs/ unless --verbose, progress of long steps.

Most tests feed the view fake events (no Ray); one launches a real 2-trial grid through
the command line with stdout a pipe, as under `nohup` or in a cluster job log."""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ablate.train.live_view import GridView
from tests.helpers import REPO as ROOT

ESCAPE = re.compile(r"\x1b|\[A")


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _view(plain=True, trials=(("l1-s0", "l1", 0), ("l2-s0", "l2", 0)), total=100, concurrent=1):
    out, clock = io.StringIO(), Clock()
    view = GridView(stream=out, plain=plain, concurrent=concurrent, clock=clock)
    for key, comb, seed in trials:
        view.add(key, comb, seed, total, batch_size=4)
    return view, out, clock


def test_plain_view_prints_one_line_per_event_without_escape_codes():
    view, out, clock = _view()
    with view:
        view.trial_started("l1-s0")
        for step in range(5, 101, 5):  # 20 reports: lines only at each 10% mark and the end
            clock.t += 2
            view.trial_result("l1-s0", {"step": step, "val/loss/total": 1 / step, "val/psnr": 20 + step / 10})
        view.trial_finished("l1-s0", {"step": 100, "final": True})
    lines = out.getvalue().splitlines()
    assert not ESCAPE.search(out.getvalue())
    assert any("l1-s0 started" in ln for ln in lines)
    progress = [ln for ln in lines if "l1-s0 step" in ln]
    assert [re.search(r"\((\d+)%\)", ln).group(1) for ln in progress] == [str(p) for p in range(10, 100, 10)]
    assert "step 50/100 (50%), val loss 0.02, PSNR 25.00 dB, 10.0 img/s" in progress[4]
    done = [ln for ln in lines if "l1-s0 done" in ln]
    assert len(done) == 1 and "100 steps in 40s" in done[0] and "1/2 done, 0 running, 1 pending, 0 failed" in done[0]
    assert lines[-1].endswith("grid: 1/2 done, 0 running, 1 pending, 0 failed, elapsed 40s, projected end "
                              f"{time.strftime('%H:%M:%S', time.localtime(clock.t + 40))} (in 40s)")


def test_eta_and_projected_end_exclude_startup_and_queue_pending_trials():
    view, _, clock = _view(concurrent=1)
    view.started = clock.t
    view.trial_started("l1-s0")
    clock.t += 30  # start-up: Ray, data, the first batch
    view.trial_result("l1-s0", {"step": 10})
    clock.t += 10
    view.trial_result("l1-s0", {"step": 20})  # 1 step/s since the first report
    row = view.rows["l1-s0"]
    assert row.eta(clock.t) == pytest.approx(80.0)
    assert row.images_per_s == pytest.approx(4.0)
    # l1 ends in 80 s, after 120 s in all; l2 waits for the one slot and takes as long.
    assert view.projected_end(clock.t) == pytest.approx(clock.t + 80 + 120)
    assert "projected end" in view.footer(clock.t) and "(in 3m20s)" in view.footer(clock.t)


def test_failed_trial_line_names_its_log_file():
    view, out, _ = _view()
    view.trial_started("l2-s0")
    view.trial_retrying("l2-s0", "RuntimeError: boom", "/exp/l2-s0-1/stderr")
    view.trial_started("l2-s0")
    view.trial_failed("l2-s0", "RuntimeError: boom", "/exp/l2-s0-1/stderr and /exp/l2-s0-1/error.txt")
    text = out.getvalue()
    assert "l2-s0 restarted" in text
    assert "failed and will be retried: RuntimeError: boom; log: /exp/l2-s0-1/stderr" in text
    failed = [ln for ln in text.splitlines() if "FAILED" in ln]
    assert len(failed) == 1
    assert "l2-s0 FAILED after 0s: RuntimeError: boom; log: /exp/l2-s0-1/stderr and /exp/l2-s0-1/error.txt" in failed[0]
    assert view.counts() == {"done": 0, "running": 0, "pending": 1, "failed": 1}


def test_tune_callback_feeds_the_view_and_names_a_failed_trials_log(tmp_path):
    pytest.importorskip("ray")
    from ablate.train.tune_feed import LiveViewCallback

    view, out, _ = _view()
    folder, working = tmp_path / "driver_artifacts" / "l1-s0-abc", tmp_path / "working_dirs" / "l1-s0-abc"
    folder.mkdir(parents=True)
    working.mkdir(parents=True)
    (working / "stderr").write_text("worker output\n")
    (folder / "error.txt").write_text("Traceback (most recent call last):\n  File x\nValueError: bad batch\n")

    class FakeTrial:  # what the callback reads of a Tune Trial
        config = {"trial": "l1-s0"}
        status = "RUNNING"
        local_path = path = str(folder)  # Tune's folder of the trial in Ray's session
        storage = type("Storage", (), {"trial_working_directory": str(working)})  # the trainable's folder
        error_file = str(folder / "error.txt")
        last_result = {"step": 100, "final": True}

        def __str__(self):
            return "l1-s0-abc"

    logs = tmp_path / "exp" / "logs"
    class KeptTrial:  # finished in an earlier launch of a resumed grid
        config = {"trial": "l2-s0"}
        status = "TERMINATED"
        last_result = {"step": 100, "final": True, "val/psnr": 22.5}

    cb, t = LiveViewCallback(view, logs), FakeTrial()
    cb.on_trial_start(iteration=1, trials=[t, KeptTrial()], trial=t)
    assert view.rows["l2-s0"].status == "done" and view.rows["l2-s0"].psnr == 22.5
    assert "1/2 done, 1 running, 0 pending" in out.getvalue()
    cb.on_trial_result(iteration=2, trials=[t], trial=t, result={"step": 50, "val/psnr": 21.0})
    cb.on_trial_error(iteration=3, trials=[t], trial=t)
    line = [ln for ln in out.getvalue().splitlines() if "FAILED" in ln][0]
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


def test_terminal_view_draws_the_table_with_footer():
    view, out, clock = _view(plain=False)
    view.started = clock.t
    view.trial_started("l1-s0")
    clock.t += 10
    view.trial_result("l1-s0", {"step": 10, "val/loss/total": 0.5, "val/psnr": 18.25})
    from rich.console import Console

    console = Console(file=io.StringIO(), width=140, force_terminal=True)
    console.print(view.table())
    text = re.sub(r"\x1b\[[0-9;]*m", "", console.file.getvalue())
    assert re.search(r"l1-s0\s*│\s*l1\s*│\s*0\s*│\s*running\s*│\s*10/100\s*│\s*0.5\s*│\s*18.25", text)
    assert re.search(r"l2-s0\s*│\s*l2\s*│\s*0\s*│\s*pending", text)
    assert "0/2 done, 1 running, 1 pending, 0 failed" in text
    assert out.getvalue() == ""  # nothing printed line by line on a terminal until a user-facing event


def test_verbose_switch_restores_rays_output():
    from ablate.runtime import ray_output

    try:
        ray_output.set_verbose(False)
        quiet = ray_output.init_kwargs()
        assert quiet["log_to_driver"] is False and quiet["env_vars"] == {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
        assert ray_output.tune_verbosity() == 0
        ray_output.set_verbose(True)
        loud = ray_output.init_kwargs()
        assert loud == {"log_to_driver": True, "env_vars": {}} and ray_output.tune_verbosity() == 1
        assert ray_output.quiet_driver() is None  # the `ray` logger stays on the terminal
    finally:
        ray_output.set_verbose(True)


def test_quiet_driver_sends_ray_loggers_to_a_file_and_collects_them(tmp_path, capsys):
    pytest.importorskip("ray")
    import ray._private.worker as ray_worker

    from ablate.runtime import ray_output

    session = tmp_path / "session"
    (session / "logs").mkdir(parents=True)
    (session / "logs" / "raylet.out").write_text("raylet says hello\n")
    try:
        ray_output.set_verbose(False)
        log = ray_output.quiet_driver()
        logging.getLogger("ray.tune").warning("a Tune warning for the file")
        assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"  # Tune's experiment box off
        # The raylet's warnings, which Ray prints whatever log_to_driver says, go to the file;
        # its errors still reach the terminal.
        ray_worker.print_to_stdstream({"pid": "raylet", "is_err": False, "lines": [
            "WARNING: 8 PYTHON worker processes have been started", "A worker died unexpectedly"]}, False)
        ray_output.note_session(str(session))
        dest = Path(ray_output.collect_logs(tmp_path / "exp"))
    finally:
        ray_output.restore_driver()
        ray_output.set_verbose(True)
        ray_output.note_session(None)
    printed = capsys.readouterr()
    assert "worker processes" not in printed.out + printed.err and "A worker died unexpectedly" in printed.out
    driver_log = (dest / "driver.log").read_text()
    assert "a Tune warning for the file" in driver_log and "(raylet) WARNING: 8 PYTHON worker" in driver_log
    assert (dest / "ray" / "raylet.out").read_text() == "raylet says hello\n"
    assert log is not None and any(not isinstance(h, logging.FileHandler) for h in logging.getLogger("ray").handlers)


@pytest.mark.ray
def test_two_trial_grid_off_a_terminal_is_plain_short_and_ray_goes_to_exp_logs(drive32, tiny_grid, tmp_path):
    """`ablate launch` with stdout a pipe: one line per trial event, no escape codes, under
    5 kB; Ray's output (raylet, workers, the driver's `ray` loggers) in EXP/logs/."""
    out = tmp_path / "exp"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           # Short: Ray's socket paths under it must stay within 107 bytes.
           "ABLATE_RAY_TMP": tempfile.mkdtemp(prefix="ar-", dir="/tmp")}
    try:
        run = subprocess.run([sys.executable, "-m", "ablate.cli", "launch", "--grid", str(tiny_grid), "--data",
                              str(drive32), "--out", str(out), "--no-evaluate"],
                             capture_output=True, text=True, env=env, timeout=600)
    finally:
        shutil.rmtree(env["ABLATE_RAY_TMP"], ignore_errors=True)
    printed = run.stdout + run.stderr
    assert run.returncode == 0, printed[-3000:]
    assert not ESCAPE.search(printed), printed
    assert len(printed.encode()) < 5000, printed
    for key in ("l1-s0", "l2-s0"):
        assert re.search(rf"^\d\d:\d\d:\d\d {key} started", run.stdout, re.MULTILINE), run.stdout
        assert re.search(rf"^\d\d:\d\d:\d\d {key} done: 6 steps in ", run.stdout, re.MULTILINE), run.stdout
    assert "Trial status" not in printed and "Started a local Ray instance" not in printed  # Tune's and Ray's own
    logs = out / "logs"
    assert f"Ray's output (Tune, Ray Data, raylet, workers): {logs}/" in run.stdout
    assert "Started a local Ray instance" in (logs / "driver.log").read_text()
    ray_files = {p.name for p in (logs / "ray").iterdir()}
    assert "raylet.out" in ray_files and any(n.startswith("worker-") for n in ray_files), sorted(ray_files)
    # What used to reach the terminal: the Train workers' checkpoint lines, in the workers' logs.
    assert "Checkpoint successfully created" not in printed
    workers = (logs / "ray").glob("worker-*")
    assert any("Checkpoint successfully created" in p.read_text(errors="replace") for p in workers)


def test_progress_of_a_long_step_prints_plain_lines_at_each_tenth():
    from ablate.ui.progress import Progress, tracked

    out, clock = io.StringIO(), Clock()
    with Progress("evaluate", 40, "trial images", stream=out, clock=clock) as p:
        for _ in range(5):  # chunks of 8 images, 3 s each: a line at most every 5 s
            clock.t += 3
            p.advance(8)
    lines = out.getvalue().splitlines()
    assert lines == ["evaluate: 16/40 trial images (40%), elapsed 6s, ETA 9s",
                     "evaluate: 32/40 trial images (80%), elapsed 12s, ETA 3s",
                     "evaluate: 40/40 trial images in 15s"]
    out = io.StringIO()
    assert list(tracked("abc", "report", "figures", stream=out)) == ["a", "b", "c"]
    assert out.getvalue().splitlines()[-1].startswith("report: 3/3 figures in ")
    assert not ESCAPE.search(out.getvalue())


def test_train_steps_reach_the_driver_from_the_train_controller():
    pytest.importorskip("ray")
    from ablate.runtime.train_progress import StepsToDriver

    class FakeQueue(list):
        put = list.append

    q = FakeQueue()
    cb = StepsToDriver(q)
    cb.after_report(None, [{"step": 500, "fm/loss": 0.1}, {"step": 500}], None)
    cb.after_report(None, [{"fm/loss": 0.1}], None)  # a report without a step moves nothing
    assert q == [500]
