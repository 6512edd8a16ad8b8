"""Launch-time decisions made before Ray starts: placement, data checks, model choice."""

from __future__ import annotations

import pandas as pd
import pytest

from ablate.config import ConfigError, find_grid, load_grid
from ablate.data.shards import DatasetError
from ablate.runtime import plan_placement
from ablate.train.grid import check_data, trial_table


def test_default_placement_leaves_a_cpu_for_ray_data():
    p = plan_placement(2, workers=1, cpus_per_worker=None, gpus_per_worker=0, concurrent=None)
    assert p.concurrent == 1 and p.workers * p.cpus_per_worker + p.driver_cpus <= 1.0
    p = plan_placement(16, workers=2, cpus_per_worker=None, gpus_per_worker=1, concurrent=3)
    assert p.concurrent * (2 * p.cpus_per_worker + p.driver_cpus) <= 15.0
    assert p.threads_per_worker == round(p.cpus_per_worker)


@pytest.mark.bad_input
def test_placement_that_would_hang_is_refused():
    with pytest.raises(ConfigError, match="one CPU stays free for Ray Data"):
        plan_placement(2, workers=1, cpus_per_worker=0.5, gpus_per_worker=0, concurrent=2)
    with pytest.raises(ConfigError, match="at least 2 are needed"):
        plan_placement(1, workers=1, cpus_per_worker=None, gpus_per_worker=0, concurrent=None)


def test_auto_foundation_retfound_else_a_fundus_mae_else_a_pretraining_stage(tmp_path, monkeypatch, drive32):
    from ablate.train.pretrained import choose_auto_foundation, fundus_mae_for
    from ablate.weights import WeightsMissing

    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("ABLATE_FUNDUS_MAE_WEIGHTS", raising=False)
    grid = load_grid(find_grid("losses"))
    # RETFound named by its variable: used as given, the choice in the combination's name
    (tmp_path / "RETFound_mae_natureCFP.pth").write_bytes(b"stand-in")
    monkeypatch.setenv("ABLATE_RETFOUND_WEIGHTS", str(tmp_path / "RETFound_mae_natureCFP.pth"))
    c = choose_auto_foundation(grid, str(drive32), fetch=False)
    assert "retfound-retfound" in {t.combination for t in c.grid.trials} and c.stage is None
    assert "rgb+meijering" in trial_table(c.grid)
    # ... named but absent: an error, not a quiet switch to another model
    monkeypatch.setenv("ABLATE_RETFOUND_WEIGHTS", str(tmp_path / "absent.pth"))
    with pytest.raises(WeightsMissing, match="absent.pth"):
        choose_auto_foundation(grid, str(drive32), fetch=False)
    # no RETFound and no fundus MAE: a stage pretrains one on this dataset, kept under its manifest's hash
    monkeypatch.delenv("ABLATE_RETFOUND_WEIGHTS")
    c = choose_auto_foundation(grid, str(drive32), fetch=False)
    names = {t.combination for t in c.grid.trials}
    assert {"retfound-fundus_mae", "edge_retfound-fundus_mae", "base", "lpips"} <= names
    keyed = fundus_mae_for(str(drive32))
    assert c.stage is not None and c.stage.out_file == keyed and keyed.parent == tmp_path / "cache" / "weights"
    assert set(c.stage.combinations) == {"retfound", "edge_retfound"}
    opts = [ls.options for t in c.grid.trials for ls in t.losses if ls.name == "foundation"]
    assert all(o["model"] == "fundus_mae" and o["weights"] == str(keyed) for o in opts)
    assert "RETFound not used" in c.note
    # pretrained earlier on the same data: reused, no stage
    keyed.parent.mkdir(parents=True)
    keyed.write_bytes(b"stand-in")
    assert choose_auto_foundation(grid, str(drive32), fetch=False).stage is None
    # the user's own fundus MAE wins over the keyed one
    (tmp_path / "cache" / "weights" / "fundus_mae.pth").write_bytes(b"stand-in")
    c = choose_auto_foundation(grid, str(drive32), fetch=False)
    assert c.stage is None and all("weights" not in ls.options for t in c.grid.trials for ls in t.losses
                                   if ls.name == "foundation")


@pytest.mark.bad_input
def test_only_selects_combinations_and_names_unknown_ones():
    from ablate.config import resolve_grid

    full, some = resolve_grid("losses", only=("base", "edge"))
    assert len(full.trials) == 18 and {t.combination for t in some.trials} == {"base", "edge"}
    assert len(some.trials) == 6
    with pytest.raises(ConfigError, match=r"no combination \['edgy'\].*base, lpips, retfound"):
        resolve_grid("losses", only=("base", "edgy"))


def test_only_launches_add_to_one_experiment(tmp_path):
    """A later launch of other combinations into the same --out is accepted and merges; the
    same trials again need --resume."""
    import json

    from ablate.experiment_layout import GRID_FILE
    from ablate.train.experiment import check_experiment_folder, grid_record
    from ablate.train.results import merge_results

    full = load_grid(find_grid("smoke"))
    keys = sorted(f"{t.combination}-s{t.seed}" for t in full.trials)
    first, second = keys[:1], keys[1:]
    (tmp_path / GRID_FILE).write_text(json.dumps(grid_record(full, "D", first), default=str))
    check_experiment_folder(tmp_path, full, resume=False, data="D", launching=second)  # others: fine
    with pytest.raises(ConfigError, match=f"already holds trials {first}"):
        check_experiment_folder(tmp_path, full, resume=False, data="D", launching=first)
    check_experiment_folder(tmp_path, full, resume=True, data="D", launching=first)
    old = pd.DataFrame({"combination": ["a", "b"], "seed": [0, 0], "status": ["done", "error"]})
    new = pd.DataFrame({"combination": ["b", "c"], "seed": [0, 0], "status": ["done", "done"]})
    merged = merge_results(old, new)
    assert list(zip(merged["combination"], merged["status"])) == [("a", "done"), ("b", "done"), ("c", "done")]


def test_data_checks_name_the_folder(tmp_path, drive32):
    grid = load_grid(find_grid("smoke"))
    with pytest.raises(DatasetError, match=f"{tmp_path}: not a prepared dataset"):
        check_data(str(tmp_path), grid)
    big = load_grid(find_grid("smoke"), {"data": {"size": 64}})
    with pytest.raises(DatasetError, match="prepared at 32 px but trial l1-s0 asks for 64 px"):
        check_data(str(drive32), big)
    assert check_data(str(drive32), grid)["image_size"] == 32


def _smoke():
    return load_grid(find_grid("smoke"))


@pytest.mark.bad_input
def test_resume_with_nothing_to_resume(tmp_path):
    from ablate.train.experiment import check_experiment_folder

    with pytest.raises(ConfigError, match="holds no experiment to resume"):
        check_experiment_folder(tmp_path / "exp", _smoke(), resume=True)


@pytest.mark.bad_input
def test_out_holding_a_different_grid_is_refused(tmp_path):
    import json

    from ablate.experiment_layout import GRID_FILE
    from ablate.train.experiment import check_experiment_folder, grid_fingerprint

    out = tmp_path / "exp"
    out.mkdir()
    (out / GRID_FILE).write_text(json.dumps(grid_fingerprint(_smoke()), default=str))
    check_experiment_folder(out, _smoke(), resume=True)  # same grid, same data: resumable
    with pytest.raises(ConfigError, match="data None -> /elsewhere"):
        check_experiment_folder(out, _smoke(), resume=True, data="/elsewhere")
    with pytest.raises(ConfigError, match=r"already holds trials \[.l1-s0., .l2-s0.\] of this grid; add --resume"):
        check_experiment_folder(out, _smoke(), resume=False)
    other = load_grid(find_grid("smoke"), {"train": {"steps": 7}})
    with pytest.raises(ConfigError, match=r"holds a different grid \('smoke'\).*changed \['l1-s0', 'l2-s0'\]"):
        check_experiment_folder(out, other, resume=True)


@pytest.mark.bad_input
def test_out_that_is_some_other_folder_is_refused(tmp_path):
    from ablate.train.experiment import check_experiment_folder

    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="not empty and holds no ablate experiment"):
        check_experiment_folder(tmp_path, _smoke(), resume=False)
    assert (tmp_path / "thesis.tex").read_text() == "precious"
