"""What the console tests share: a clock they move by hand, the escape codes a plain (not a
terminal) output must not hold, and a live grid view writing to a string."""

from __future__ import annotations

import io
import re

# A cursor move or any escape sequence: none may reach a log file or a pipe.
ESCAPE_CODES = re.compile(r"\x1b|\[A")


class ManualClock:
    """A clock for the views' `clock=` argument: it reads `t` (seconds), which the test sets."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def grid_view(plain=True, trials=(("l1-s0", "l1", 0), ("l2-s0", "l2", 0)), total=100, concurrent=1):
    """A GridView on a StringIO with a ManualClock, the `trials` added (batch size 4).

    Args:
        plain: plain lines (a pipe or a log file) rather than a redrawn table.
        trials: (key, combination, seed) of each trial.
        total: each trial's step count.
        concurrent: how many trials run at once.

    Returns (view, the StringIO it writes to, its clock).
    """
    from ablate.train.live_view import GridView

    out, clock = io.StringIO(), ManualClock()
    view = GridView(stream=out, plain=plain, concurrent=concurrent, clock=clock)
    for key, comb, seed in trials:
        view.add(key, comb, seed, total, batch_size=4)
    return view, out, clock
