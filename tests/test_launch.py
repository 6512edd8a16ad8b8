"""Launch-time decisions made before Ray starts: placement, data checks, model choice."""

from __future__ import annotations

import pytest

from ablate.config import ConfigError, find_grid, load_grid
from ablate.data.shards import DatasetError
from ablate.runtime import plan_placement
from ablate.train.grid import check_data, resolve_auto_foundation, trial_table


def test_default_placement_leaves_a_cpu_for_ray_data():
    p = plan_placement(2, workers=1, cpus_per_worker=None, gpus_per_worker=0, concurrent=None)
    assert p.concurrent == 1 and p.workers * p.cpus_per_worker + p.driver_cpus <= 1.0
    p = plan_placement(16, workers=2, cpus_per_worker=None, gpus_per_worker=1, concurrent=3)
    assert p.concurrent * (2 * p.cpus_per_worker + p.driver_cpus) <= 15.0
    assert p.threads_per_worker == round(p.cpus_per_worker)


def test_placement_that_would_hang_is_refused():
    with pytest.raises(ConfigError, match="one CPU stays free for Ray Data"):
        plan_placement(2, workers=1, cpus_per_worker=0.5, gpus_per_worker=0, concurrent=2)
    with pytest.raises(ConfigError, match="at least 2 are needed"):
        plan_placement(1, workers=1, cpus_per_worker=None, gpus_per_worker=0, concurrent=None)


def test_auto_foundation_picks_retfound_only_when_its_file_exists(tmp_path, monkeypatch):
    grid = load_grid(find_grid("losses"))
    monkeypatch.setenv("ABLATE_RETFOUND_WEIGHTS", str(tmp_path / "absent.pth"))
    resolved = resolve_auto_foundation(grid)
    names = {t.combination for t in resolved.trials}
    assert {"retfound-fundus_mae", "edge_retfound-fundus_mae", "base", "lpips"} <= names
    models = {ls.options["model"] for t in resolved.trials for ls in t.losses if ls.name == "foundation"}
    assert models == {"fundus_mae"}
    (tmp_path / "RETFound_mae_natureCFP.pth").write_bytes(b"stand-in")
    monkeypatch.setenv("ABLATE_RETFOUND_WEIGHTS", str(tmp_path / "RETFound_mae_natureCFP.pth"))
    resolved = resolve_auto_foundation(grid)
    assert "retfound-retfound" in {t.combination for t in resolved.trials}
    assert "rgb+meijering" in trial_table(resolved)


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


def test_resume_with_nothing_to_resume(tmp_path):
    from ablate.train.experiment import check_experiment_folder

    with pytest.raises(ConfigError, match="holds no experiment to resume"):
        check_experiment_folder(tmp_path / "exp", _smoke(), resume=True)


def test_out_holding_a_different_grid_is_refused(tmp_path):
    import json

    from ablate.train.experiment import GRID_RECORD, check_experiment_folder, grid_fingerprint

    out = tmp_path / "exp"
    out.mkdir()
    (out / GRID_RECORD).write_text(json.dumps(grid_fingerprint(_smoke()), default=str))
    check_experiment_folder(out, _smoke(), resume=True)  # same grid, same data: resumable
    with pytest.raises(ConfigError, match="data None -> /elsewhere"):
        check_experiment_folder(out, _smoke(), resume=True, data="/elsewhere")
    with pytest.raises(ConfigError, match="already holds this grid; add --resume"):
        check_experiment_folder(out, _smoke(), resume=False)
    other = load_grid(find_grid("smoke"), {"train": {"steps": 7}})
    with pytest.raises(ConfigError, match=r"holds a different grid \('smoke'\).*changed \['l1-s0', 'l2-s0'\]"):
        check_experiment_folder(out, other, resume=True)


def test_out_that_is_some_other_folder_is_refused(tmp_path):
    from ablate.train.experiment import check_experiment_folder

    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="not empty and holds no ablate experiment"):
        check_experiment_folder(tmp_path, _smoke(), resume=False)
    assert (tmp_path / "thesis.tex").read_text() == "precious"
