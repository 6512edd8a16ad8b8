"""A dataset's identity (ablate.data.identity): its key is its name and manifest hash; a dataset re-prepared in place under a trained experiment is refused naming both hashes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ablate.data.shards import DatasetError
from ablate.pipeline import LaunchOptions, prepare_launch
from tests.helpers import RAY_STARTS

# ---------------------------------------------------------------- finding 10: the dataset's identity

@pytest.mark.fault
@pytest.mark.usefixtures("no_ray_start")
def test_dataset_reprepared_in_place_is_refused_naming_both_hashes(tmp_path, drive_dir, monkeypatch):
    """Finding F10 (issue 20): Dataset reprepared in place is refused naming both hashes."""

    from ablate.config import resolve_grid
    from ablate.data.identity import RECORD_KEY, manifest_sha256
    from ablate.data.shards import prepare
    from ablate.evaluate.run import EvalOptions, evaluate_experiment
    from ablate.experiment_layout import GRID_FILE
    from ablate.train.experiment import check_experiment_folder, grid_record

    d, out = tmp_path / "data", tmp_path / "exp"
    prepare(drive_dir, d, size=32)
    before = manifest_sha256(str(d))
    full, _ = resolve_grid("smoke")
    out.mkdir()
    record = grid_record(full, str(d), ["l1-s0"], data_hash=before)
    assert record[RECORD_KEY] == before
    (out / GRID_FILE).write_text(json.dumps(record, default=str))
    check_experiment_folder(out, full, resume=True, data=str(d), data_hash=manifest_sha256(str(d)))  # same data
    prepare(drive_dir, d, size=64)  # re-prepared in place: same path, other images
    after = manifest_sha256(str(d))
    assert after != before
    with pytest.raises(DatasetError) as e:
        check_experiment_folder(out, full, resume=True, data=str(d), data_hash=after)
    assert f"records manifest sha256 {before}, manifest.json now hashes to {after}" in str(e.value)
    assert str(e.value).startswith("--resume: ") and "new --out" in str(e.value)
    # the whole launch path, before Ray: refused the same way
    with pytest.raises(DatasetError, match=f"records manifest sha256 {before}"):
        prepare_launch(LaunchOptions(grid="smoke", data=str(d), out=str(out), resume=True))
    # `ablate evaluate` of the experiment's own dataset: refused before any image is read
    pd.DataFrame({"trial": ["l1-s0-x"], "combination": ["l1"], "seed": [0], "status": ["done"],
                  "checkpoint": ["ckpt"], "config.data.size": [32]}).to_parquet(out / "results.parquet")
    monkeypatch.setattr("ablate.evaluate.run.load_test_split", lambda *a, **k: pytest.fail("read a changed dataset"))
    with pytest.raises(DatasetError, match=f"ablate evaluate: .*records manifest sha256 {before}, .* {after}"):
        evaluate_experiment(EvalOptions(exp=str(out)))
    assert not RAY_STARTS


@pytest.mark.fault
@pytest.mark.usefixtures("no_ray_start")
def test_record_without_a_hash_is_resumed_with_a_warning_and_gains_it(tmp_path, data, capsys):
    """Finding F10 (issue 20): Record without a hash is resumed with a warning and gains it."""

    from ablate.config import resolve_grid
    from ablate.data.identity import RECORD_KEY, manifest_sha256
    from ablate.experiment_layout import GRID_FILE
    from ablate.train.experiment import check_experiment_folder, grid_fingerprint, record_dataset

    full, _ = resolve_grid("smoke")
    out = tmp_path / "exp"
    out.mkdir()
    (out / GRID_FILE).write_text(json.dumps(grid_fingerprint(full, str(data)), default=str))  # an older launch
    now = manifest_sha256(str(data))
    check_experiment_folder(out, full, resume=True, data=str(data), data_hash=now)
    assert "grid.json records no dataset hash" in capsys.readouterr().err
    assert record_dataset(out, now) and json.loads((out / GRID_FILE).read_text())[RECORD_KEY] == now
    assert not record_dataset(out, "0" * 64)  # a recorded hash is never replaced


@pytest.mark.usefixtures("no_ray_start")
def test_dataset_key_is_name_and_manifest_hash():
    """Finding F1 (issue 25): Dataset key is name and manifest hash."""

    from ablate.evaluate.arguments import dataset_key

    assert dataset_key("/x/siteA/prepared/", "ab" * 32, "test") == "prepared-abababababab"
    assert dataset_key("s3://b/p q", "cd" * 32, "all") == "p_q-cdcdcdcdcdcd-all"
