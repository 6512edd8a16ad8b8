"""launch -> evaluate -> report (ablate.pipeline): what `prepare_launch` refuses in a dry run, before Ray starts."""

from __future__ import annotations

import math

import pytest

from ablate.config import ConfigError
from ablate.data.shards import DatasetError
from ablate.pipeline import LaunchOptions, prepare_launch
from tests.helpers import RAY_STARTS
from tests.helpers.grids import TWO_COMBINATION_GRID, write_grid_file
from tests.helpers.prepared import read_manifest_json, write_manifest_json


@pytest.mark.bad_input
def test_batch_not_divisible_by_workers_refused_before_ray(tmp_path, monkeypatch, drive32):
    """Each worker of each trial refused it (and Ray Train retried it); now the launch refuses it
    first, a dry run too."""
    import ray

    import ablate.runtime
    from ablate.pipeline import LaunchOptions, prepare_launch

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started"))
    monkeypatch.setattr(ablate.runtime, "local_resources", lambda: (16.0, 0.0))  # 3 workers fit anywhere
    grid = write_grid_file(tmp_path, TWO_COMBINATION_GRID)
    with pytest.raises(ConfigError) as e:
        prepare_launch(LaunchOptions(grid=str(grid), data=str(drive32), workers=3, dry_run=True))
    assert str(e.value) == (f"{grid}: combinations.a.train.batch_size: 2 is not divisible by --workers 3 (the "
                            "batch is split evenly over the workers); change one of them")


# ---------------------------------------------------------------- finding 2: values before Ray

BAD_VALUES = [
    ({"concurrent": 0}, "--concurrent must be >= 1, got 0"),
    ({"concurrent": -1}, "--concurrent must be >= 1, got -1"),
    ({"workers": 0}, "--workers must be >= 1, got 0"),
    ({"cpus_per_worker": 0.0}, "--cpus-per-worker must be > 0 (at least 0.01), got 0"),
    ({"cpus_per_worker": -1.0}, "--cpus-per-worker must be > 0 (at least 0.01), got -1"),
    ({"cpus_per_worker": math.nan}, "--cpus-per-worker must be > 0 (at least 0.01), got nan"),
    ({"threads_per_worker": 0}, "--threads-per-worker must be >= 1, got 0"),
    ({"gpus_per_worker": -0.5}, "--gpus-per-worker must be >= 0, got -0.5"),
    ({"trial_retries": -1}, "--trial-retries must be >= 0, got -1"),
    ({"max_failures": -2}, "--max-failures must be >= 0, or -1 for unlimited restarts, got -2"),
    ({"steps": 0}, "--steps must be >= 1, got 0"),
    ({"epochs": 0}, "--epochs must be >= 1, got 0"),
    ({"size": -32}, "--size must be a multiple of 8 and >= 16, got -32"),
    ({"size": 20}, "--size must be a multiple of 8 and >= 16, got 20"),
    ({"fm_steps": 0}, "--fm-steps must be >= 1, got 0"),
]


@pytest.mark.parametrize("bad,message", BAD_VALUES, ids=[next(iter(b)) + "=" + str(next(iter(b.values())))
                                                         for b, _ in BAD_VALUES])
@pytest.mark.bad_input
@pytest.mark.usefixtures("no_ray_start")
def test_bad_launch_value_refused_in_dry_run_before_ray(bad, message, drive32, capsys):
    """Finding F2 (issue 20): Bad launch value refused in dry run before ray."""

    with pytest.raises(ConfigError) as e:
        prepare_launch(LaunchOptions(grid="smoke", data=str(drive32), dry_run=True, **bad))
    assert str(e.value) == message
    assert capsys.readouterr().out == ""  # refused first: no trial table, nothing resolved
    assert not RAY_STARTS


@pytest.mark.parametrize("opts", [{"workers": 100}, {"workers": 2, "cpus_per_worker": 1.0},
                                  {"concurrent": 3, "cpus_per_worker": 0.5}],
                         ids=["workers100", "2x1cpu", "3concurrent"])
@pytest.mark.bad_input
@pytest.mark.usefixtures("no_ray_start")
def test_placement_that_does_not_fit_refused_in_dry_run(opts, monkeypatch, drive32):
    """Finding F2 (issue 20): Placement that does not fit refused in dry run."""

    import ablate.runtime

    monkeypatch.setattr(ablate.runtime, "local_resources", lambda: (2.0, 0.0))  # this 2-core machine, anywhere
    with pytest.raises(ConfigError, match="do not fit in 2 CPUs|Lower --concurrent"):
        prepare_launch(LaunchOptions(grid="smoke", data=str(drive32), dry_run=True, **opts))
    assert not RAY_STARTS


@pytest.mark.usefixtures("no_ray_start")
def test_unlimited_max_failures_named_in_the_placement_line(monkeypatch, drive32, capsys):
    """Finding F2 (issue 20): Unlimited max failures named in the placement line."""

    import ablate.runtime

    monkeypatch.setattr(ablate.runtime, "local_resources", lambda: (2.0, 0.0))
    assert prepare_launch(LaunchOptions(grid="smoke", data=str(drive32), dry_run=True, max_failures=-1)) is None
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("placement:"))
    assert "1 trial(s) at a time" in line and "unlimited worker-group restart(s) per trial (--max-failures -1)" in line
    assert not RAY_STARTS


@pytest.mark.bad_input
@pytest.mark.usefixtures("no_ray_start")
def test_launch_check_covers_the_test_split_when_evaluating(data):
    """Finding F7 (issue 20): Launch check covers the test split when evaluating."""

    from ablate.config import find_grid, load_grid
    from ablate.train.grid import check_data

    grid = load_grid(find_grid("smoke"))
    (data / "test-00000.parquet").unlink()  # train and val whole; evaluation would fail after training
    with pytest.raises(DatasetError, match=r"test-00000.parquet: shard listed in manifest.json is missing"):
        check_data(str(data), grid)
    check_data(str(data), grid, evaluate=False)  # --no-evaluate reads no test split
    m = read_manifest_json(data)
    write_manifest_json(data, {**m, "counts": {**m["counts"], "test": 0},
                           "shards": [s for s in m["shards"] if s["split"] != "test"]})
    with pytest.raises(DatasetError, match=r"the test split is empty \(evaluation reads it; --no-evaluate"):
        check_data(str(data), grid)
