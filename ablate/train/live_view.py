"""The grid's live view: one row per trial (combination, seed, status, step / total,
latest val loss and PSNR, images/s, elapsed, ETA) and a footer for the grid. A trial with
a prior goes on after its autoencoder's last step (ablate/prior/progress.py): its status
says "encoding codes", "prior k/N" or "drawing samples", its ETA is the prior's, and its
finish line gives the prior's steps, val loss and samples.

On a terminal it is a rich table redrawn in place; anywhere else (a pipe, `nohup`, a
cluster job log) it prints one plain line per trial event - started, every `every_pct`
percent of its steps, finished, failed - and never an escape code, so the log stays
readable at any length. Fed with plain events (`tune_feed.py` turns Ray Tune's callbacks
into them), so it imports neither Ray nor torch and is tested with fake events.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from ablate.prior import progress as prior
from ablate.runtime.config_errors import CONFIG_ERROR
from ablate.ui.progress import duration

if TYPE_CHECKING:
    from rich.live import Live

PENDING, RUNNING, RETRYING, DONE, DIVERGED, FAILED = "pending", "running", "retrying", "done", "diverged", "failed"
ENDED = (DONE, DIVERGED, FAILED)


@dataclass
class Row:
    key: str  # the trial's name in the grid, e.g. "l1-s0"
    combination: str
    seed: int
    total: int | None  # steps the trial will train; None when it trains whole epochs
    batch_size: int
    status: str = PENDING
    step: int = 0
    loss: float | None = None  # latest val/loss/total
    psnr: float | None = None  # latest val/psnr
    images_per_s: float | None = None
    started: float | None = None
    ended: float | None = None
    first: tuple[float, int] | None = None  # (time, step) of the first report: rates exclude start-up
    last: tuple[float, int] | None = None  # (time, step) of the latest report
    shown_pct: int = 0  # the last progress mark printed as a plain line
    log: str | None = None  # where a failed trial's output is
    error: str | None = None
    # The prior stage, after the autoencoder (a PriorStage's value while it runs, else None):
    stage: str | None = None
    prior_step: int = 0
    prior_total: int | None = None  # the prior's steps in all
    prior_samples: int | None = None  # the samples it draws
    prior_val_loss: float | None = None
    prior_started: float | None = None  # when its training began
    prior_first: tuple[float, int] | None = None  # (time, prior step) of its first Train report
    prior_last: tuple[float, int] | None = None

    def elapsed(self, now: float) -> float:
        if self.started is None:
            return 0.0
        return (self.ended or now) - self.started

    def steps_per_s(self) -> float | None:
        """From the trial's reports after its first one, so start-up (Ray, data, the first
        batch) does not slow the estimate; before that, from its start."""
        return _rate(self.started, self.first, self.last)

    def eta(self, now: float) -> float | None:
        """Seconds left, from now (the time since the latest report counts as done work); in
        the prior stage, of the prior's training (unknown while encoding or drawing)."""
        if self.status != RUNNING:
            return None
        if self.stage is not None:
            total, step, last = self.prior_total, self.prior_step, self.prior_last
            rate = _rate(self.prior_started, self.prior_first, last) if self.stage == prior.PriorStage.TRAINING else None
        else:
            total, step, last, rate = self.total, self.step, self.last, self.steps_per_s()
        if total is None or rate is None or last is None:
            return None
        return max(0.0, (total - step) / rate - (now - last[0]))

    def status_text(self) -> str:
        """The status, or where a running trial's prior stage stands."""
        if self.status != RUNNING or self.stage is None:
            return self.status
        if self.stage == prior.PriorStage.ENCODING:
            return "encoding codes"
        if self.stage == prior.PriorStage.DRAWING:
            return "drawing samples"
        return f"prior {self.prior_step}/{self.prior_total if self.prior_total is not None else '?'}"


def _rate(start: float | None, first: tuple[float, int] | None, last: tuple[float, int] | None) -> float | None:
    """Steps per second from the first report to the latest (start-up excluded), or from
    `start` (step 0) before a second report."""
    if last is None:
        return None
    t0, s0 = first if first and last[1] > first[1] else (start, 0)
    dt = last[0] - t0 if t0 is not None else 0.0
    return (last[1] - s0) / dt if dt > 0 and last[1] > s0 else None




def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


@dataclass
class GridView:
    """The state of the grid and both ways of showing it. `plain` chooses the plain
    lines; None decides from `stream.isatty()`."""
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    plain: bool | None = None
    every_pct: int = 10
    concurrent: int = 1  # trials at a time, for the projected end
    rows: dict[str, Row] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    started: float | None = None

    def __post_init__(self) -> None:
        if self.plain is None:
            self.plain = not (hasattr(self.stream, "isatty") and self.stream.isatty())
        self._live: Live | None = None

    # -- the grid's trials and their events --

    def add(self, key: str, combination: str, seed: int, total: int | None, batch_size: int) -> None:
        self.rows[key] = Row(key, combination, seed, total, batch_size)

    def finished_before(self, key: str, metrics: dict | None) -> None:
        """A trial a resumed grid keeps as it was (finished in an earlier launch): shown done, no line."""
        r, metrics = self.rows[key], metrics or {}
        if r.status == PENDING:
            r.status = DIVERGED if metrics.get("stop_reason") else DONE
            r.step = int(metrics.get("step") or 0)
            r.loss, r.psnr = metrics.get("val/loss/total"), metrics.get("val/psnr")

    def trial_started(self, key: str) -> None:
        now = self._now()
        r = self.rows[key]
        retry = r.status == RETRYING
        r.status, r.ended, r.error, r.stage = RUNNING, None, None, None  # a retry begins with its autoencoder
        if r.started is None:
            r.started = now
        self._line(f"{key} {'restarted' if retry else 'started'} ({self._counts()})", always=False)

    def trial_result(self, key: str, metrics: dict) -> None:
        now = self._now()
        r = self.rows[key]
        if metrics.get(prior.STAGE) is not None:  # the prior stage's progress: its `step` is the autoencoder's last
            self._prior_progress(r, metrics, now)
            return
        step = metrics.get("step")
        if step is None:
            return  # not one of the trial's training reports
        step = int(step)
        if r.last is not None and step > r.last[1] and now > r.last[0]:
            r.images_per_s = (step - r.last[1]) * r.batch_size / (now - r.last[0])
        if r.first is None:
            r.first = (now, step)
        r.last, r.step = (now, step), step
        r.loss = metrics.get("val/loss/total", r.loss)
        r.psnr = metrics.get("val/psnr", r.psnr)
        if r.status == PENDING:
            r.status, r.started = RUNNING, r.started or now
        self._progress_line(r, now)
        self._refresh()

    def trial_finished(self, key: str, metrics: dict | None = None, stopped_by: str | None = None) -> None:
        """`stopped_by`: who ended the trial before its last step (a search's scheduler), said on its line."""
        metrics = metrics or {}
        if metrics.get(CONFIG_ERROR):  # ended without raising, so that Tune would not retry it
            self.trial_failed(key, f"{metrics[CONFIG_ERROR]} (a configuration error: not retried)", None)
            return
        r = self.rows[key]
        if metrics.get("step") is not None and int(metrics["step"]) != r.step:
            self.trial_result(key, metrics)
        r.ended = self._now()
        reason = metrics.get("stop_reason")
        r.status, r.stage = DIVERGED if reason else DONE, None
        what = f"stopped: {reason}" if reason else f"stopped early by {stopped_by}" if stopped_by else "done"
        # The prior's figures, when the trial trained one (the stage's last report: ablate/train/driver.py).
        made = (f"; prior {metrics['prior.steps']} steps, val loss {_num(metrics.get(prior.VAL_LOSS), '.4g')}, "
                f"{metrics.get('prior.samples')} samples" if metrics.get("prior.steps") is not None else "")
        self._line(f"{key} {what}: {r.step} steps in {duration(r.elapsed(r.ended))}, "
                   f"val loss {_num(r.loss, '.4g')}, PSNR {_num(r.psnr, '.2f')} dB{made} ({self._counts()})")

    def _prior_progress(self, r: Row, metrics: dict, now: float) -> None:
        """A report of the trial's prior stage (ablate/prior/progress.py): where it stands,
        never the autoencoder's step."""
        stage = prior.PriorStage(metrics[prior.STAGE])
        r.prior_total = metrics.get(prior.STEPS_TOTAL, r.prior_total)
        r.prior_samples = metrics.get(prior.SAMPLES_TOTAL, r.prior_samples)
        if r.status == PENDING:
            r.status, r.started = RUNNING, r.started or now
        began = stage != r.stage
        r.stage = stage
        if began and stage == prior.PriorStage.TRAINING:
            r.prior_started, r.prior_first, r.prior_last, r.prior_step = now, None, None, 0
        step = metrics.get(prior.STEP)
        if stage == prior.PriorStage.TRAINING and step is not None:
            step = int(step)
            if r.prior_first is None:
                r.prior_first = (now, step)
            r.prior_last, r.prior_step = (now, step), step
            r.prior_val_loss = metrics.get(prior.VAL_LOSS, r.prior_val_loss)
            total = r.prior_total
            pct = f" ({100 * step // total}%)" if total else ""
            self._line(f"{r.key} prior {step}/{total if total is not None else '?'}{pct}, "
                       f"val loss {_num(r.prior_val_loss, '.4g')}, elapsed {duration(r.elapsed(now))}, "
                       f"ETA {duration(r.eta(now))}", always=False)
        elif began:
            what = {prior.PriorStage.ENCODING: f"autoencoder done at step {r.step}; prior: encoding codes",
                    prior.PriorStage.TRAINING: f"prior: training {r.prior_total} steps",
                    prior.PriorStage.DRAWING: f"prior: drawing {r.prior_samples} samples"}[stage]
            self._line(f"{r.key} {what}, elapsed {duration(r.elapsed(now))}", always=False)
        self._refresh()

    def trial_retrying(self, key: str, error: str | None, log: str | None = None) -> None:
        r = self.rows[key]
        r.status, r.error, r.log = RETRYING, error, log
        self._line(f"{key} failed and will be retried: {error or 'no error text'}"
                   f"{f'; log: {log}' if log else ''}")

    def trial_failed(self, key: str, error: str | None, log: str | None) -> None:
        r = self.rows[key]
        r.status, r.error, r.log, r.ended = FAILED, error, log, self._now()
        self._line(f"{key} FAILED after {duration(r.elapsed(r.ended))}: {error or 'no error text'}; "
                   f"log: {log or 'none written'} ({self._counts()})")

    # -- the footer --

    def counts(self) -> dict[str, int]:
        c = {s: 0 for s in (DONE, RUNNING, PENDING, FAILED)}
        for r in self.rows.values():
            c[{DIVERGED: DONE, RETRYING: RUNNING}.get(r.status, r.status)] += 1
        return c

    def _counts(self) -> str:
        c = self.counts()
        return f"{c[DONE]}/{len(self.rows)} done, {c[RUNNING]} running, {c[PENDING]} pending, {c[FAILED]} failed"

    def projected_end(self, now: float) -> float | None:
        """When the grid should end: the running trials' ETAs, then the pending ones at
        `concurrent` at a time, each as long as the trials seen so far took (or will take)."""
        running = [r for r in self.rows.values() if r.status in (RUNNING, RETRYING)]
        pending = sum(r.status == PENDING for r in self.rows.values())
        if not running and not pending:
            return None
        known = [r.eta(now) for r in running]
        etas = [e for e in known if e is not None]
        if len(etas) < len(known):
            return None
        lengths = [r.elapsed(now) for r in self.rows.values() if r.status in (DONE, DIVERGED)]
        lengths += [r.elapsed(now) + e for r, e in zip(running, etas)]
        per_trial = sum(lengths) / len(lengths) if lengths else None
        if pending and per_trial is None:
            return None
        slots = max(1, self.concurrent)
        # Pending trials start as running ones end: spread over the slots, in waves.
        free_at = sorted(etas) + [0.0] * max(0, slots - len(etas))
        for _ in range(pending):
            assert per_trial is not None  # pending trials without a length returned above
            free_at.sort()
            free_at[0] += per_trial
        return now + max(free_at)

    def footer(self, now: float | None = None) -> str:
        now = self._now() if now is None else now
        end = self.projected_end(now)
        elapsed = f", elapsed {duration(now - self.started)}" if self.started else ""
        at = (f", projected end {time.strftime('%H:%M:%S', time.localtime(end))} (in {duration(end - now)})"
              if end is not None else "")
        return f"{self._counts()}{elapsed}{at}"

    # -- output --

    # GridView, not typing.Self: that is Python 3.11+, and typing_extensions is no dependency of ours.
    def __enter__(self) -> GridView:  # noqa: PYI034
        self.started = self._now()
        if not self.plain:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(get_renderable=self.table, console=Console(file=self.stream),
                              refresh_per_second=1, transient=False, redirect_stdout=True, redirect_stderr=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
        else:
            self._line(f"grid: {self.footer()}")

    def table(self):
        """The rich table of every trial, with the footer as its caption."""
        from rich.table import Table

        now = self._now()
        t = Table(caption=self.footer(now), caption_justify="left", expand=False)
        for name in ("trial", "combination", "seed", "status", "step", "val loss", "val PSNR", "img/s",
                     "elapsed", "ETA"):
            t.add_column(name, justify="right" if name not in ("trial", "combination", "status") else "left")
        style = {DONE: "green", FAILED: "red", DIVERGED: "yellow", RETRYING: "yellow", RUNNING: "cyan"}
        for r in self.rows.values():
            t.add_row(r.key, r.combination, str(r.seed), f"[{style.get(r.status, 'dim')}]{r.status_text()}",
                      f"{r.step}/{r.total if r.total is not None else '?'}", _num(r.loss, ".4g"),
                      _num(r.psnr, ".2f"), _num(r.images_per_s, ".1f"),
                      duration(r.elapsed(now)) if r.started else "-", duration(r.eta(now)))
        return t

    def _progress_line(self, r: Row, now: float) -> None:
        if r.total:
            pct = min(100, 100 * r.step // r.total)
            mark = pct // self.every_pct * self.every_pct
            if mark <= r.shown_pct or mark == 0 or r.step >= r.total:
                return  # the finish has its own line
            r.shown_pct = mark
            where = f"step {r.step}/{r.total} ({pct}%)"
        else:
            where = f"step {r.step}"
        self._line(f"{r.key} {where}, val loss {_num(r.loss, '.4g')}, PSNR {_num(r.psnr, '.2f')} dB, "
                   f"{_num(r.images_per_s, '.1f')} img/s, elapsed {duration(r.elapsed(now))}, "
                   f"ETA {duration(r.eta(now))}", always=False)

    def _line(self, text: str, always: bool = True) -> None:
        """A plain line; on a terminal only the lines that need the user (`always`) are
        printed above the table, the rest is in the table itself."""
        stamp = time.strftime("%H:%M:%S", time.localtime(self._now()))
        if self._live is not None:
            if always:
                self._live.console.print(f"{stamp} {text}", markup=False, highlight=False)
            self._refresh()
        elif self.plain:
            print(f"{stamp} {text}", file=self.stream, flush=True)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def _now(self) -> float:
        return self.clock()
