"""Ray's output (ablate.runtime.ray_output): sent to EXP/logs/ unless --verbose; the verbose switch restores it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest


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
        # The same warning as Ray 2.60's GCS error channel delivers it: no prefix (it reached the
        # terminal in a CI run, from a Ray another test had left running in this process).
        ray_worker.print_to_stdstream({"pid": "raylet", "is_err": False, "lines": [
            ("10 PYTHON worker processes have been started on node: 5b97 with address: 192.0.2.2, which is 5x "
             "the maximum expected startup concurrency (2).")]}, False)
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
    assert "(raylet) 10 PYTHON worker processes have been started on node" in driver_log
    assert (dest / "ray" / "raylet.out").read_text() == "raylet says hello\n"
    assert log is not None and any(not isinstance(h, logging.FileHandler) for h in logging.getLogger("ray").handlers)
