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


# ----------------------------------------------------------------------------- the prior stage

AE_FINAL = {"step": 100, "final": True, "val/loss/total": 0.02, "val/psnr": 30.0, "checkpoint_path": "/exp/train/ae"}


def _prior(stage: str, **kw) -> dict:
    from ablate.prior.progress import PriorStage, progress_report

    return progress_report(AE_FINAL, PriorStage(stage), steps_total=600, samples_total=32, **kw)


def _table_text(view) -> str:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=160, force_terminal=True)
    console.print(view.table())
    return re.sub(r"\x1b\[[0-9;]*m", "", console.file.getvalue())


def test_the_prior_stage_shows_after_the_autoencoder_and_leaves_its_step_alone():
    view, out, clock = grid_view()
    view.trial_started("l1-s0")
    for step in (50, 100):
        clock.t += 10
        view.trial_result("l1-s0", {**AE_FINAL, "step": step})
    row = view.rows["l1-s0"]
    ae_last, ae_rate, ae_img = row.last, row.steps_per_s(), row.images_per_s
    assert row.eta(clock.t) == 0.0  # the autoencoder's steps are done

    clock.t += 5
    view.trial_result("l1-s0", _prior("encoding"))
    assert row.status_text() == "encoding codes" and row.eta(clock.t) is None  # not 0: the trial is not done
    clock.t += 30
    view.trial_result("l1-s0", _prior("training"))
    assert row.status_text() == "prior 0/600"
    clock.t += 20  # the Train run starts, then its first checkpoint's report
    view.trial_result("l1-s0", _prior("training", step=200, loss=3.5, val_loss=3.75))
    assert row.status_text() == "prior 200/600" and row.eta(clock.t) == pytest.approx(40.0)  # 10 steps/s since training began
    clock.t += 10
    view.trial_result("l1-s0", _prior("training", step=400, loss=3.0, val_loss=3.25))
    assert row.eta(clock.t) == pytest.approx(10.0)  # 20 steps/s since its first report: start-up excluded
    # The autoencoder's row is as it was: its step, total and rates are not the prior's.
    assert (row.step, row.total, row.last, row.steps_per_s(), row.images_per_s) == (100, 100, ae_last, ae_rate, ae_img)
    assert re.search(r"l1-s0\s*│\s*l1\s*│\s*0\s*│\s*prior 400/600\s*│\s*100/100\s*│\s*0.02", _table_text(view))
    clock.t += 10
    view.trial_result("l1-s0", _prior("drawing"))
    assert row.status_text() == "drawing samples" and row.eta(clock.t) is None
    assert view.projected_end(clock.t) is None  # how long drawing takes is not known

    clock.t += 15
    final = {**AE_FINAL, "prior.steps": 600, "prior.loss": 2.9, "prior.val_loss": 3.125, "prior.samples": 32,
             "prior.checkpoint": "/exp/samples/l1-s0/prior/train/x"}
    view.trial_finished("l1-s0", final)
    assert row.status_text() == "done" and row.step == 100
    lines = [ln[9:] for ln in out.getvalue().splitlines()]  # without the HH:MM:SS stamps
    assert lines[-6:] == [
        "l1-s0 autoencoder done at step 100; prior: encoding codes, elapsed 25s",
        "l1-s0 prior: training 600 steps, elapsed 55s",
        "l1-s0 prior 200/600 (33%), val loss 3.75, elapsed 1m15s, ETA 40s",
        "l1-s0 prior 400/600 (66%), val loss 3.25, elapsed 1m25s, ETA 10s",
        "l1-s0 prior: drawing 32 samples, elapsed 1m35s",
        ("l1-s0 done: 100 steps in 1m50s, val loss 0.02, PSNR 30.00 dB; prior 600 steps, val loss 3.125, 32 samples "
         "(1/2 done, 0 running, 1 pending, 0 failed)"),
    ]


def test_a_retried_trial_is_back_at_its_autoencoder_and_a_trial_without_a_prior_ends_as_before():
    view, out, _ = grid_view()
    view.trial_started("l1-s0")
    view.trial_result("l1-s0", {**AE_FINAL})
    view.trial_result("l1-s0", _prior("training", step=200))
    view.trial_retrying("l1-s0", "RuntimeError: lost node", None)
    view.trial_started("l1-s0")
    assert view.rows["l1-s0"].status_text() == "running"
    view.trial_started("l2-s0")
    view.trial_finished("l2-s0", {"step": 100, "final": True, "val/loss/total": 0.5, "val/psnr": 20.0})
    done = next(ln for ln in out.getvalue().splitlines() if "l2-s0 done" in ln)
    assert "PSNR 20.00 dB (" in done and "prior" not in done


def test_a_trial_the_search_stopped_early_says_so_not_done():
    """A stage-1 trial ASHA stopped (tuned arms) ends at fewer steps: its line names who stopped it."""
    from ablate.train.live_view import DONE

    out = io.StringIO()
    view = GridView(concurrent=1, stream=out)
    view.add("l1 #1", "l1", 5, 12, 4)
    view.trial_started("l1 #1")
    view.trial_finished("l1 #1", {"step": 6, "val/psnr": 9.5, "val/loss/total": 0.4}, stopped_by="ASHA (pruned)")
    line = out.getvalue().splitlines()[-1]
    assert "l1 #1 stopped early by ASHA (pruned): 6 steps" in line and " done" not in line.split("(")[0]
    assert view.rows["l1 #1"].status == DONE  # counted with the finished: it ended as the search meant
