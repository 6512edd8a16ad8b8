"""The grid's live view (ablate.train.live_view): plain lines off a terminal, a table on one, a failed trial named as failed."""

from __future__ import annotations

import io
import re
import time

import pytest

from ablate.train.live_view import GridView
from tests.helpers.console import ESCAPE_CODES, grid_view


def test_live_view_says_a_config_error_trial_failed_not_done():
    import io

    from ablate.runtime.config_errors import CONFIG_ERROR
    from ablate.train.live_view import FAILED

    out = io.StringIO()
    view = GridView(concurrent=1, stream=out)
    view.add("a-s0", "a", 0, 5, 2)
    view.trial_finished("a-s0", {CONFIG_ERROR: "ConfigError: bad model", "trial_id": "x"})
    assert view.rows["a-s0"].status == FAILED
    assert "a-s0 FAILED" in out.getvalue() and "ConfigError: bad model (a configuration error: not retried)" in out.getvalue()


def test_plain_view_prints_one_line_per_event_without_escape_codes():
    view, out, clock = grid_view()
    with view:
        view.trial_started("l1-s0")
        for step in range(5, 101, 5):  # 20 reports: lines only at each 10% mark and the end
            clock.t += 2
            view.trial_result("l1-s0", {"step": step, "val/loss/total": 1 / step, "val/psnr": 20 + step / 10})
        view.trial_finished("l1-s0", {"step": 100, "final": True})
    lines = out.getvalue().splitlines()
    assert not ESCAPE_CODES.search(out.getvalue())
    assert any("l1-s0 started" in ln for ln in lines)
    progress = [ln for ln in lines if "l1-s0 step" in ln]
    assert [re.search(r"\((\d+)%\)", ln).group(1) for ln in progress] == [str(p) for p in range(10, 100, 10)]
    assert "step 50/100 (50%), val loss 0.02, PSNR 25.00 dB, 10.0 img/s" in progress[4]
    done = [ln for ln in lines if "l1-s0 done" in ln]
    assert len(done) == 1 and "100 steps in 40s" in done[0] and "1/2 done, 0 running, 1 pending, 0 failed" in done[0]
    assert lines[-1].endswith("grid: 1/2 done, 0 running, 1 pending, 0 failed, elapsed 40s, projected end "
                              f"{time.strftime('%H:%M:%S', time.localtime(clock.t + 40))} (in 40s)")


def test_eta_and_projected_end_exclude_startup_and_queue_pending_trials():
    view, _, clock = grid_view(concurrent=1)
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
    view, out, _ = grid_view()
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


def test_terminal_view_draws_the_table_with_footer():
    view, out, clock = grid_view(plain=False)
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
