"""Pretrained files on a Ray cluster: fetched once by the launcher, handed to the other
nodes through the experiment's storage, verified by sha256 on arrival.

`ship` (the launcher, after every file was fetched and verified on its machine) copies
each file once to EXP/weights/<file> and writes EXP/weights/manifest.json (name, file,
sha256). `receive` (a Train worker, an evaluation task: any process on any node) does
nothing for a file its own caches already hold; otherwise it copies the file from the
experiment into this node's $ABLATE_CACHE/weights/shipped/, checks its sha256 against the
manifest (a mismatch is refused and the copy deleted), and points the entry's environment
variable at it, so every loader in the process finds it without a network. One upload per
experiment and one download per node, never one per trial.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from ablate import storage
from ablate.io import sha256_file
from ablate.weights import WeightsMissing
from ablate.weights.table import WeightsHashMismatch, entry, locate, weights_dir

SHIP_DIR = "weights"
MANIFEST = "manifest.json"


def ship(files: dict[str, Path], exp: str | Path) -> dict[str, dict]:
    """Copy each verified file (table name -> local path) to EXP/weights/ once; returns the manifest.
    Files shipped inside a wheel travel with the installation and are left out."""
    manifest = {}
    for name, path in sorted(files.items()):
        e = entry(name)
        if e.source == "packaged":
            continue
        dest = storage.join(exp, SHIP_DIR, e.file)
        if not (storage.is_file(dest) and _size(dest) == Path(path).stat().st_size):
            storage.copy_file(path, dest)
        manifest[name] = {"file": e.file, "uri": dest, "sha256": sha256_file(path), "path": str(Path(path).resolve())}
    if manifest:
        storage.write_text(storage.join(exp, SHIP_DIR, MANIFEST), json.dumps(manifest, indent=1) + "\n")
    return manifest


def _size(location: str) -> int:
    if not storage.is_uri(location):
        return Path(location).stat().st_size
    fs, path = storage.resolve(location)
    return fs.get_file_info(path).size


def read_manifest(exp: str | Path) -> dict:
    path = storage.join(exp, SHIP_DIR, MANIFEST)
    return json.loads(storage.read_text(path)) if storage.is_file(path) else {}


def receive(manifest: dict) -> dict[str, Path]:
    """Make every shipped file available in this process (see the module docstring); returns
    {name: path} of the files it had to bring."""
    brought = {}
    for name, item in manifest.items():
        e = entry(name)
        try:
            if e.source == "ablate":
                if Path(item["path"]).is_file() and sha256_file(item["path"]) == item["sha256"]:
                    continue
                raise WeightsMissing(item["path"])
            locate(name)
            continue  # this node's own cache (or an override) holds it, verified
        except WeightsHashMismatch:
            raise
        except WeightsMissing:
            pass
        # Files ablate makes are named by path in the loss options (the launcher's path, under
        # $ABLATE_CACHE): they arrive at that path. The others arrive in this node's cache and
        # their environment variable points there.
        dest = Path(item["path"]) if e.source == "ablate" else weights_dir() / "shipped" / item["file"]
        if not (dest.is_file() and sha256_file(dest) == item["sha256"]):
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.partial")
            storage.copy_file(item["uri"], tmp)
            digest = sha256_file(tmp)
            if digest != item["sha256"]:
                tmp.unlink(missing_ok=True)
                raise WeightsHashMismatch(f"{name}: the copy of {item['uri']} has sha256 {digest}, but the launcher "
                                          f"shipped {item['sha256']}; not used. Re-launch to ship it again.")
            os.replace(tmp, dest)
        if e.env and e.source != "ablate":
            os.environ[e.env] = str(dest)  # the loaders' own lookup finds it (a given path)
        brought[name] = dest
    return brought
