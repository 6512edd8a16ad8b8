"""Progress of one long step (images evaluated, figures rendered, files prepared), in the
live view's style: a bar on a terminal, and elsewhere one plain line at every
`every_pct` percent (or only the end line), with no escape codes.

    with Progress("evaluate", total=40, unit="trial images") as p:
        for chunk in chunks:
            ...
            p.advance(len(chunk))

A resumed step counts its earlier work as done but not in the rate (`resumed`), and
named counts ride along on every line (`counts={"rejected": 0}`, updated by
`advance(1, rejected=3)`).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress as Bar


def duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = round(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"



class Progress:
    """Args:
        label: what runs, first on each line ("evaluate").
        total: units of work in all; 0 prints nothing.
        unit: what a unit is ("trial images", "figures").
        stream: where to print (stdout).
        plain: plain lines; None decides from `stream.isatty()`.
        every_pct: a plain line at every this many percent (None: the end line only)...
        min_interval_s: ...but not sooner than this after the last one (a step of a few
            seconds gets its end line only).
        resumed: units an earlier, interrupted run already did: counted done, not in the rate.
        counts: named counts shown on every line ({"rejected": 0}); `advance` updates them.
        rate_unit: shows the rate of new units on each line, e.g. "images/s"; None: no rate.
    """

    def __init__(self, label: str, total: int, unit: str, stream: TextIO | None = None, plain: bool | None = None,
                 every_pct: int | None = 10, min_interval_s: float = 5.0, clock=time.time, resumed: int = 0,
                 counts: dict[str, int] | None = None, rate_unit: str | None = None):
        self.label, self.total, self.unit, self.every_pct, self.clock = label, total, unit, every_pct, clock
        self.min_interval_s, self.printed_at = min_interval_s, None
        self.stream = stream or sys.stdout
        self.plain = plain if plain is not None else not (hasattr(self.stream, "isatty") and self.stream.isatty())
        self.resumed, self.counts, self.rate_unit = resumed, dict(counts or {}), rate_unit
        self.done, self.shown, self.started = resumed, 0, None
        self._bar: Bar | None = None

    def details(self) -> str:
        """", 4 resumed, 3.1 images/s, 2 rejected": what follows the count on each line."""
        parts = [f"{self.resumed} resumed"] if self.resumed else []
        if self.rate_unit:
            elapsed = self.clock() - self.started if self.started is not None else 0.0
            parts.append(f"{(self.done - self.resumed) / elapsed if elapsed > 0 else 0.0:.1f} {self.rate_unit}")
        parts += [f"{v} {k}" for k, v in self.counts.items()]
        return "".join(f", {p}" for p in parts)

    # Progress, not typing.Self: that is Python 3.11+, and typing_extensions is no dependency of ours.
    def __enter__(self) -> Progress:  # noqa: PYI034
        self.started = self.clock()
        if not self.plain and self.total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn(f"{self.label}"), BarColumn(), MofNCompleteColumn(), TextColumn(self.unit),
                            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[details]}"),
                            console=Console(file=self.stream))
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.done,
                                            details=self.details().removeprefix(", "))
        return self

    def advance(self, n: int = 1, **counts: int) -> None:
        self.done += n
        self.counts.update(counts)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, details=self.details().removeprefix(", "))
            return
        if not self.plain or not self.total or self.every_pct is None:
            return
        mark = min(100, 100 * self.done // self.total) // self.every_pct * self.every_pct
        now = self.clock()
        quiet_since = now - (self.printed_at or self.started)
        if mark > self.shown and self.done < self.total and quiet_since >= self.min_interval_s:
            self.shown, self.printed_at = mark, now
            elapsed = now - self.started
            new = self.done - self.resumed
            eta = elapsed * (self.total - self.done) / new if new > 0 else None
            self._print(f"{self.label}: {self.done}/{self.total} {self.unit} ({mark}%){self.details()}, "
                        f"elapsed {duration(elapsed)}" + (f", ETA {duration(eta)}" if eta is not None else ""))

    def passing(self, value, n: int = 1):
        """`value`, with `n` units counted done (for use inside a comprehension)."""
        self.advance(n)
        return value

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
        if self.plain and self.total and exc[0] is None:  # on a terminal the finished bar stays
            took = duration(self.clock() - self.started)
            self._print(f"{self.label}: {self.done}/{self.total} {self.unit} in {took}{self.details()}")

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def tracked(items, label: str, unit: str, **kwargs):
    """`items` one by one, counted done as the loop asks for the next (a one-line change
    to a `for` loop): `for fig in tracked(figs, "report", "figures"):`."""
    items = list(items)
    with Progress(label, len(items), unit, **kwargs) as p:
        for item in items:
            yield item
            p.advance()
