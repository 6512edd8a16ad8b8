"""ablate's own cache folder, the one root every part reads: $ABLATE_CACHE, else
~/.cache/ablate. Below it: weights/ (files ablate makes and the verification records),
demo/ (the built-in data), prepare-work/, prepare-locks/ and prepare-done/ (`ablate
prepare`'s scratch, locks and unchanged-input records), tensorboard-mirror/.

Read each call, not at import, so a test or a notebook that sets $ABLATE_CACHE later is
obeyed."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$ABLATE_CACHE (with ~ expanded), else ~/.cache/ablate."""
    return Path(os.environ.get("ABLATE_CACHE") or Path.home() / ".cache" / "ablate").expanduser()
