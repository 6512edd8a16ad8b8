"""What `ablate prepare` shows while it works: a bar on a terminal (files done / total,
images/s, ETA, rejects so far), redrawn at most a few times a second; one summary line
when the output is not a terminal (a log file wants no carriage returns)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """prepare calls start(total, skipped, rejects), advance(n, rejects) per result, finish()."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None, every: float = 0.25):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every = every

    def start(self, total: int, skipped: int = 0, rejects: int = 0) -> None:
        self.total, self.skipped, self.rejects = total, skipped, rejects
        self.done = skipped
        self.t0 = self.last = time.monotonic()
        if self.tty:
            self._draw()

    def advance(self, n: int, rejects: int) -> None:
        self.done += n
        self.rejects = rejects
        now = time.monotonic()
        if self.tty and now - self.last >= self.every:
            self.last = now
            self._draw()

    def line(self) -> str:
        elapsed = time.monotonic() - self.t0
        new = self.done - self.skipped
        rate = new / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else None
        pct = 100.0 * self.done / self.total if self.total else 100.0
        skipped = f", {self.skipped} resumed" if self.skipped else ""
        return (f"{self.done}/{self.total} files ({pct:.0f}%{skipped}), {rate:.1f} images/s, "
                f"{'ETA ' + _clock(eta) if eta is not None and self.done < self.total else 'elapsed ' + _clock(elapsed)}, "
                f"{self.rejects} rejected")

    def _draw(self) -> None:
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.line()}\033[K")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self._draw()
            self.stream.write("\n")
        else:
            self.stream.write(f"prepared {self.line()}\n")
        self.stream.flush()
