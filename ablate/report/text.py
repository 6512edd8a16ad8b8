"""Text from the experiment made fit for the report (issue 25, finding 6).

A trial's `error` holds what Ray raised: a traceback of dozens of lines, often with terminal
colour codes. Pasted into report.md or index.html it shows as raw escape sequences and
breaks tables, and buries the one line a reader needs. `plain(text)` strips ANSI escape
sequences and other control characters and cuts a traceback to its last line (the
exception), keeping the path of the full log where there is one. Everything the report
renders passes through it (render.py).
"""

from __future__ import annotations

import re

# CSI (colours, cursor), OSC (titles, hyperlinks; ended by BEL or ST) and two-byte escapes.
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # all but tab and newline
FRAME = re.compile(r'^\s*File "[^"]*", line \d+', re.MULTILINE)
LOG_PATH = re.compile(r"(?:[a-z][a-z0-9+.-]*://|/)[^\s'\"()]+\.(?:log|txt|err|out)\b", re.IGNORECASE)


def strip_ansi(text: str) -> str:
    return CONTROL.sub("", ANSI.sub("", text.replace("\r\n", "\n")))


def is_traceback(text: str) -> bool:
    return "Traceback (most recent call last)" in text or bool(FRAME.search(text))


def plain(text, log: str | None = None) -> str:
    """`text` without escape sequences; a traceback cut to its last line (+ where the full
    log is: `log`, else the last log path the text names)."""
    s = strip_ansi(str(text))
    if not is_traceback(s):
        return s
    lines = [ln.strip() for ln in s.splitlines()]
    # The exception line: the last one that is not a frame, source or caret line (indented in a traceback).
    own = [ln.strip() for ln in s.splitlines() if ln.strip() and not ln[:1].isspace()
           and not ln.startswith("Traceback (most recent call last)")]
    last = own[-1] if own else next((ln for ln in reversed(lines) if ln), "")
    where = log or next(iter(LOG_PATH.findall(s)[-1:]), None)
    return last + (f" (full traceback: {where})" if where else " (traceback cut to its last line)")
