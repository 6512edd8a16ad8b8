"""Checks on what a command or an error says."""

from __future__ import annotations


def one_line(text: str) -> str:
    """`text` itself, after asserting it is one line (surrounding blank lines aside) and holds
    no traceback.

    Args:
        text: a message or a command's output.
    """
    assert "\n" not in text.strip() and "Traceback" not in text, text
    return text
