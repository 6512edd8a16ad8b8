"""The results table (ablate.train.results): merging never loses a finished trial's checkpoint; a trial ended by a configuration error is an error row."""

from __future__ import annotations

import pandas as pd
import pytest

from ablate.config import load_grid
from tests.helpers import REPO as ROOT


@pytest.mark.fault
def test_merge_never_replaces_a_finished_checkpoint_with_none(capsys):
    """Finding F1 (issue 20): Merge never replaces a finished checkpoint with none."""

    from ablate.train.results import merge_results

    old = pd.DataFrame([{"trial": "l1-s0-a", "combination": "l1", "seed": 0, "status": "done", "checkpoint": "/x/ck1",
                         "val/loss": 0.1},
                        {"trial": "l2-s0-b", "combination": "l2", "seed": 0, "status": "incomplete",
                         "checkpoint": None, "val/loss": 0.5}])
    new = pd.DataFrame([{"trial": "l1-s0-c", "combination": "l1", "seed": 0, "status": "incomplete",
                         "checkpoint": None, "val/loss": 9.0},
                        {"trial": "l2-s0-b", "combination": "l2", "seed": 0, "status": "done", "checkpoint": "/x/ck2",
                         "val/loss": 0.2}])
    merged = merge_results(old, new).set_index("combination")
    assert len(merged) == 2
    assert merged.loc["l1", "checkpoint"] == "/x/ck1" and merged.loc["l1", "status"] == "done"
    assert merged.loc["l1", "val/loss"] == 0.1
    assert merged.loc["l2", "checkpoint"] == "/x/ck2"  # a finished resume still replaces an unfinished row
    assert "l1-s0-a: kept as finished with checkpoint /x/ck1" in capsys.readouterr().out


@pytest.mark.fault
def test_trial_ended_by_a_config_error_is_an_error_row_with_the_message():
    from types import SimpleNamespace

    from ablate.runtime.config_errors import CONFIG_ERROR
    from ablate.train.results import collect_results

    g = load_grid(ROOT / "search_spaces" / "smoke.yaml")
    spec = g.trials[0]
    key = f"{spec.combination}-s{spec.seed}"
    result = SimpleNamespace(config={"trial": key}, error=None, path="/x",
                             metrics={CONFIG_ERROR: "ConfigError: bad model", "trial_id": "abc"})
    row = collect_results([result], {key: spec}).iloc[0]
    assert row["status"] == "error" and row["error"] == "ConfigError: bad model"
