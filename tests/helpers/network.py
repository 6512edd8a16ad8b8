"""Loopback addresses and ports for the tests of servers and listeners."""

from __future__ import annotations

import socket

# Every way a socket can name this machine's loopback: a listener bound to one of these is
# not reachable from another machine.
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def free_port() -> int:
    """A TCP port on 127.0.0.1 free a moment ago (the OS picked it; it may be taken again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
