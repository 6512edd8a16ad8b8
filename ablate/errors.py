"""The one base class of every error the user can fix.

A leaf: it imports nothing from ablate, so any module at any layer can raise a user
error and the command line (`ablate.runtime.console.Commands`) can catch them all in
one place, whatever package they come from.
"""

from __future__ import annotations


class AblateError(Exception):
    """Bad input or environment the user can fix: a search space, option, dataset, file,
    folder, lock or pretrained network that is wrong, missing or unreadable. The message
    names the file (or option), the key where there is one, and the fix; the command line
    prints it as one `error: ...` line, with no traceback.

    Every subclass also keeps the builtin base it had before (`class ConfigError(AblateError,
    ValueError)`), so code that catches ValueError, FileNotFoundError or OSError still does.
    What is not an AblateError is a bug in ablate (or a fault of the machine) and keeps its
    traceback.
    """
