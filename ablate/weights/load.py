"""Reading a weights file without running anything in it, and saying in one line why one cannot be read.

Every pretrained file is read with torch.load(weights_only=True) (TorchScript: torch.jit.load),
so a file cannot run code. When reading fails, torch's own message is several lines and
ends with advice to load the file with weights_only=False, which would run whatever the file
holds: that advice is never passed on. The user gets one line instead: the file, what is
wrong with it in words, and how to replace it.
"""

from __future__ import annotations

import os
import re
import warnings

from ablate.weights import WeightsMissing


class WeightsUnreadable(WeightsMissing):
    """A weights file is present but cannot be loaded; the message names it and the fix."""


def _reason(err: BaseException) -> str:
    """What is wrong with the file, in words, from torch's error (its unsafe-loading advice dropped)."""
    text = str(err)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (f"it stores a Python object ({found.group(1)}), not only tensors, and such objects are not "
                "loaded since they could run code: re-save only its tensors (its state_dict)")
    if "PytorchStreamReader" in text or "zip archive" in text:
        return "it is not a whole torch file (other bytes, or a zip archive cut short by an interrupted copy)"
    if isinstance(err, EOFError) or "Ran out of input" in text:
        return "it is empty or truncated"
    if isinstance(err, OSError) and not isinstance(err, WeightsMissing):
        return f"it cannot be read ({err.strerror or err})"
    if "weights_only" in text or "npickl" in text or "load key" in text:
        return "it is not a torch weights file (other bytes, or a format torch cannot read)"
    return text.splitlines()[0][:160] if text.strip() else type(err).__name__


def unreadable(path: str | os.PathLike, what: str, fix: str, err: BaseException) -> WeightsUnreadable:
    return WeightsUnreadable(f"{path}: cannot be loaded as {what}: {_reason(err)}. {fix}")


def read_weights_file(path: str | os.PathLike, what: str = "a torch weights file",
                      fix: str = "Replace it with a good copy.") -> object:
    """torch.load(weights_only=True) on CPU; WeightsUnreadable (one line: file, reason, `fix`) if it fails."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # re-raised as one line naming the file, not swallowed
        raise unreadable(path, what, fix, e) from e


def read_script(path: str | os.PathLike, what: str, fix: str):
    """torch.jit.load on CPU; WeightsUnreadable (one line) if it fails."""
    import torch

    try:
        with warnings.catch_warnings():
            # torch >= 2.9 flags TorchScript as deprecated; the file only exists in that format.
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated", category=FutureWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise unreadable(path, what, fix, e) from e


def fix_for(name: str) -> str:
    """How to replace an unloadable file of table entry `name`: name a good copy, or get one."""
    from ablate.weights.table import entry, fetch_command

    e = entry(name)
    named = " or ".join(x for x in (e.option and f"the {e.option}", e.env and f"${e.env}") if x)
    get = fetch_command(e)
    return f"Point {named} at a good copy of {e.file}, or get one: {get}." if named else f"Get a good copy: {get}."
