"""The prepared dataset's manifest (ablate.data.dataset): a wrong-shaped manifest.json is named in one line."""

from __future__ import annotations

import pytest

from ablate.data.shards import DatasetError, read_manifest
from tests.helpers.prepared import read_manifest_json, write_manifest_json

# ---------------------------------------------------------------- finding 7: manifest shapes

def _no_sha_in_shard_2(m):
    del m["shards"][2]["sha256"]
    return m


BAD_MANIFESTS = [
    ("list", lambda m: [], "top level is a list, expected an object"),
    ("shards_object", lambda m: {"format_version": 1, "shards": {}}, "image_size missing"),
    ("shard_without_sha256", _no_sha_in_shard_2, "shards[2].sha256 missing"),
    ("counts_list", lambda m: {**m, "counts": [18, 2, 20]}, "counts is a list, expected an object"),
    ("count_string", lambda m: {**m, "counts": {**m["counts"], "test": "20"}}, "counts.test is a string"),
    ("size_null", lambda m: {**m, "image_size": None}, "image_size is null, expected an integer >= 1"),
    ("shard_outside", lambda m: {**m, "shards": [{**s, "file": "../../etc/passwd.parquet"} for s in m["shards"]]},
     "shards[0].file is '../../etc/passwd.parquet', expected a .parquet file name inside the dataset folder"),
    ("test_shard_dropped", lambda m: {**m, "shards": [s for s in m["shards"] if s["split"] != "test"]},
     "counts.test is 20 but its shards hold 0 rows"),
    ("old_format", lambda m: {**m, "format_version": 0}, "format_version 0 != 1; re-run prepare"),
]


@pytest.mark.bad_input
@pytest.mark.parametrize("name,damage,message", BAD_MANIFESTS, ids=[b[0] for b in BAD_MANIFESTS])
@pytest.mark.usefixtures("no_ray_start")
def test_wrong_shaped_manifest_named_in_one_line(name, damage, message, data):
    """Finding F7 (issue 20): Wrong shaped manifest named in one line."""

    write_manifest_json(data, damage(read_manifest_json(data)))
    with pytest.raises(DatasetError) as e:
        read_manifest(data)
    assert str(e.value).startswith(f"{data / 'manifest.json'}: {message}")
    assert "\n" not in str(e.value)
