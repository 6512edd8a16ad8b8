"""A prepared dataset's identity: the sha256 of its manifest.json's bytes. The manifest
lists every shard's sha256, its image size and its split, so the same hash means the same
images, preprocessed the same way, in the same splits. An experiment records it in
grid.json when launched; resuming or evaluating it on a dataset re-prepared in place under
the same path (another size, another split, other images) is refused, naming both hashes.
`data_dir` is a local folder or a URI (s3://bucket/prefix) throughout.
"""

from __future__ import annotations

import logging

from ablate import storage
from ablate.data.shards import MANIFEST, DatasetError, read_manifest

logger = logging.getLogger(__name__)

RECORD_KEY = "manifest_sha256"  # the key in grid.json


def manifest_sha256(data_dir: str) -> str:
    """The dataset's identity (its manifest validated first: DatasetError naming the file)."""
    read_manifest(data_dir)
    where = storage.normalize(data_dir) if storage.is_uri(data_dir) else data_dir
    return storage.sha256(storage.join(where, MANIFEST))


def check_same_dataset(record: dict | None, data_dir: str, exp, doing: str, now: str | None = None) -> str:
    """Refuse `doing` (e.g. "--resume") on a dataset whose manifest is not the one the experiment in
    `exp` was launched on (`record`: its grid.json); returns the current hash (`now`, when the
    caller has it already). A record written before ablate kept the hash cannot be checked: said
    on stderr, and accepted, since refusing would strand every older experiment (the data path is
    still compared, and the launch records the hash from then on)."""
    now = now or manifest_sha256(data_dir)
    recorded = (record or {}).get(RECORD_KEY)
    if recorded is None:
        logger.warning(f"{exp}: grid.json records no dataset hash (written before ablate kept one), so whether "
                       f"{data_dir} changed since the launch cannot be checked; {doing} goes on with manifest "
                       f"sha256 {now}")
        return now
    if recorded != now:
        raise DatasetError(
            f"{doing}: {data_dir} is not the dataset {exp} was launched on: grid.json records manifest sha256 "
            f"{recorded}, {MANIFEST} now hashes to {now} (re-prepared in place?). Prepare the old data again into "
            f"{data_dir} (same source, --size and --seed), or launch the grid into a new --out on the new data"
        )
    return now
