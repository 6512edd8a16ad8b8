"""The experiment folder (ablate.train.experiment): what a launch accepts as its folder, and the dataset it was trained on."""

from __future__ import annotations

import json

import pytest

from ablate.lock import LOCK_FILE


@pytest.mark.fault
def test_folder_holding_only_a_killed_launchs_lock_is_launchable_and_rechecked_under_the_lock(tmp_path):
    """Finding F1 (issue 20): A launch killed before it wrote grid.json leaves only its lock file: a fresh launch into
    the folder is not refused as 'not empty'; anything else in it still is."""
    from ablate.config import ConfigError, find_grid, load_grid
    from ablate.train.experiment import check_experiment_folder

    grid = load_grid(find_grid("smoke"))
    out = tmp_path / "exp"
    out.mkdir()
    (out / LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": "gone"}))
    check_experiment_folder(out, grid, resume=False)  # accepted
    (out / "stray.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        check_experiment_folder(out, grid, resume=False)
