"""What library modules log, shown by the command line as they used to print it.

Modules log through `logging.getLogger(__name__)` (loggers under `ablate`): `info` for a line
that belongs on stdout, `warning` for one that belongs on stderr. `setup_logging()`, called by
the command line before any command runs (`ablate.ui.console.Commands`), gives the
`ablate` logger two handlers that print the message alone, INFO to stdout and WARNING and above
to stderr: the same text on the same stream as the print() calls they replaced.

Without it (ablate used as a library) the messages follow the host program's logging setup.
In a Ray Train worker Ray's own root handler prints them (message only, to the worker's
stderr, captured as Ray captures any worker output: runtime/ray_output.py).
"""

from __future__ import annotations

import logging
import sys

LOGGER = "ablate"


class _ConsoleHandler(logging.StreamHandler):
    """Writes to `sys.stdout` or `sys.stderr` as it is when a record is emitted, not as it was
    when the handler was made: pytest's capture and typer's CliRunner swap those per test and
    per invocation, and a handler holding an old (closed) stream would lose the line."""

    def __init__(self, stream_name: str):
        super().__init__()
        self.stream_name = stream_name

    @property
    def stream(self):
        return getattr(sys, self.stream_name)

    @stream.setter
    def stream(self, _value) -> None:  # StreamHandler.__init__ assigns one; the property decides
        pass


def _below_warning(record: logging.LogRecord) -> bool:
    return record.levelno < logging.WARNING


def setup_logging(level: int = logging.INFO) -> None:
    """Show the `ablate` loggers' records at `level` and above: below WARNING on stdout,
    WARNING and above on stderr, each as its message alone. Calling it again replaces the
    handlers it made before (one line per record, never two).

    Args:
        level: the lowest level shown (logging.DEBUG to see debug records too).
    """
    logger = logging.getLogger(LOGGER)
    for h in [h for h in logger.handlers if isinstance(h, _ConsoleHandler)]:
        logger.removeHandler(h)
    plain = logging.Formatter("%(message)s")
    out, err = _ConsoleHandler("stdout"), _ConsoleHandler("stderr")
    out.addFilter(_below_warning)
    err.setLevel(logging.WARNING)
    for h in (out, err):
        h.setFormatter(plain)
        logger.addHandler(h)
    logger.setLevel(level)
    # Shown here once: a handler a host program put on the root logger would print it again.
    logger.propagate = False
