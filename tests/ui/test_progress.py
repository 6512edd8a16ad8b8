"""Progress of long steps (ablate.ui.progress): plain lines at each tenth off a terminal."""

from __future__ import annotations

import io

from tests.helpers.console import ESCAPE_CODES, ManualClock


def test_progress_of_a_long_step_prints_plain_lines_at_each_tenth():
    from ablate.ui.progress import Progress, tracked

    out, clock = io.StringIO(), ManualClock()
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
    assert not ESCAPE_CODES.search(out.getvalue())
