"""The one base class of every error the user can fix.

A leaf: it imports nothing from ablate, so any module at any layer can raise a user
error and the command line (`ablate.ui.console.Commands`) can catch them all in
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


# User-error twins of the builtins, for a check that has no error class of its own domain
# (an option of one command, a folder given to it): each keeps its builtin base, so callers and
# tests that catch ValueError or FileNotFoundError see no difference.
class InvalidInput(AblateError, ValueError):
    """An option or argument, or a value in a file the user wrote, that ablate cannot use."""


class InputMissing(AblateError, FileNotFoundError):
    """A file, folder or URI the user named (or an earlier command should have written) is not there."""


class NotAFolder(AblateError, NotADirectoryError):
    """A path given as a folder is a file (or something else)."""


class InputUnreadable(AblateError, PermissionError):
    """A file or folder the user named cannot be read by this user."""
