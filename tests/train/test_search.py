"""Stage 1 of tuned arms without Ray running (ablate/train/search.py, search_stage.py, launch.py):
which combinations are searched and how (setups, Tune's searcher and scheduler, driven by hand),
what a finished search's trials become (the trials table, the best row, chosen.json, stage 2's
grid), and what a launch checks and prints before Ray starts (the stage counts, stage 1's wall
time, the test split left unopened). Ray's classes are built and called here; Ray is never
started (`no_ray_start` where a path could reach it)."""

from __future__ import annotations

import dataclasses
import json
import math
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ablate.config import load_grid
from ablate.data.shards import DatasetError, shard_paths
from ablate.experiment_layout import ExperimentLayout
from ablate.schemas import ChosenPoint, TuningRecord
from ablate.specs import ConfigError
from ablate.train.search import (
    REDUCTION_FACTOR,
    best_row,
    chosen_point,
    read_chosen,
    scheduler,
    search_algorithm,
    search_setups,
    shared_splits,
    trial_rows,
    tune_distribution,
    tuned_grid,
    write_chosen,
)
from tests.helpers import RAY_STARTS
from tests.helpers.prepared import read_manifest_json, write_manifest_json

# Three combinations x three seeds; two searched (in the order opposite to the file's space),
# one (`none`) retrained as written. The prior is stage 2's: stage 1 drops it.
GRID = """
name: tuned
base:
  data: {{size: 32, cache_mb: {cache_mb}}}
  model: {{preset: tiny}}
  train: {{steps: 200, batch_size: 2, val_every: 100, checkpoint_every: 150, lr: 1.0e-4}}
  losses:
    l1: {{weight: 1.0}}
    codebook: {{weight: 1.0}}
    adversarial: {{weight: 0.5, start_step: 50}}
{prior}
combinations:
  log_loss:
    losses: {{edge: {{weight: 1.0, family: log, channel: green, sigma: 1.0}}}}
  none: {{}}
  fast: {{train: {{lr: 3.0e-4}}}}
seeds: [0, 1, 2]
tune:
  objective: val/psnr
  budget: 5
  algorithm: {algorithm}
  scheduler: {scheduler}
  seed: 7
  grace_steps: 50
  space:
    fast: {{train.lr: {{loguniform: [1.0e-5, 1.0e-3]}}, losses.l1.weight: {{uniform: [0.5, 2]}}}}
    log_loss:
      losses.edge.weight: {{loguniform: [0.05, 5]}}
      losses.adversarial.start_step: {{choice: [{choices}]}}
"""
PRIOR = "  prior: {steps: 10, layers: 1, heads: 1, width: 8}"
LOG_LOSS_KEYS = ("losses.edge.weight", "losses.adversarial.start_step")


def _grid_file(tmp_path: Path, algorithm: str = "optuna", scheduler: str = "asha", prior: str = PRIOR,
               choices: str = "50, 150", cache_mb: float = 4096, tune: bool = True) -> Path:
    text = GRID.format(algorithm=algorithm, scheduler=scheduler, prior=prior, choices=choices, cache_mb=cache_mb)
    if not tune:
        text = text[:text.index("tune:")]
    p = tmp_path / "g.yaml"
    p.write_text(text)
    return p


def _grid(tmp_path: Path, **kw):
    return load_grid(_grid_file(tmp_path, **kw))


def _setup(tmp_path: Path, combination: str = "log_loss", **kw):
    return next(s for s in search_setups(_grid(tmp_path, **kw)) if s.combination == combination)


def _param_space(setup) -> dict:
    """Tune's param_space of a search, as search_stage.search_combination builds it."""
    return {f"p{i}": tune_distribution(setup.tune.searched(setup.combination)[k]) for i, k in enumerate(setup.keys)}


# ---------------------------------------------------------------- which searches, and their trials


def test_one_search_per_searched_combination_in_grid_order_at_the_search_seed_without_a_prior(tmp_path):
    grid = _grid(tmp_path)
    setups = search_setups(grid)
    assert [s.combination for s in setups] == ["log_loss", "fast"]  # the grid's order; `none` is not searched
    assert [s.keys for s in setups] == [LOG_LOSS_KEYS, ("train.lr", "losses.l1.weight")]
    for s in setups:
        as_written = next(t for t in grid.trials if t.combination == s.combination)
        assert as_written.prior is not None and as_written.seed == 0
        assert s.spec == dataclasses.replace(as_written, seed=7, prior=None)  # all else as written
        assert s.tune is grid.tune


def test_a_tune_config_becomes_the_point_and_the_trial_spec_at_it(tmp_path):
    s = _setup(tmp_path)
    config = {"p0": np.float64(0.3), "p1": np.int64(150)}  # as Tune's samplers give them
    point = s.point(config)
    assert point == {"losses.edge.weight": 0.3, "losses.adversarial.start_step": 150}
    assert [type(v) for v in point.values()] == [float, int]  # plain Python: the spec and JSON take them
    spec = s.spec_at(config)
    assert {ls.name: (ls.weight, ls.start_step) for ls in spec.losses} == {
        "l1": (1.0, 0), "codebook": (1.0, 0), "adversarial": (0.5, 150), "edge": (0.3, 0)}
    assert spec.seed == 7 and spec.prior is None
    assert s.trial_name("a1b2c_00003") == "log_loss-search-a1b2c_00003"


def test_each_distribution_becomes_the_tune_domain_of_the_same_range():
    from ray.tune.search.sample import Categorical, Float, Integer

    from ablate.specs import Distribution, DistributionKind

    d = tune_distribution(Distribution(DistributionKind.loguniform, (0.05, 5.0)))
    assert isinstance(d, Float) and isinstance(d.get_sampler(), Float._LogUniform) and (d.lower, d.upper) == (0.05, 5.0)
    d = tune_distribution(Distribution(DistributionKind.uniform, (0.5, 2.0)))
    assert isinstance(d, Float) and isinstance(d.get_sampler(), Float._Uniform) and (d.lower, d.upper) == (0.5, 2.0)
    d = tune_distribution(Distribution(DistributionKind.randint, (3, 7)))
    assert isinstance(d, Integer) and (d.lower, d.upper) == (3, 7)
    draws = d.sample(size=400, random_state=np.random.default_rng(0))
    assert set(draws) == {3, 4, 5, 6}  # high excluded, as _extremes (config_tune) assumes
    d = tune_distribution(Distribution(DistributionKind.choice, (50, 1000)))
    assert isinstance(d, Categorical) and d.categories == [50, 1000]


# ---------------------------------------------------------------- the searcher, driven by hand


def _suggestions(searcher, setup, n: int) -> list:
    searcher.set_search_properties(None, None, _param_space(setup))
    return [searcher.suggest(f"t{i}") for i in range(n)]


def test_optuna_proposes_the_as_written_point_first_seeded_and_at_most_concurrent_at_a_time(tmp_path):
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    s = _setup(tmp_path)
    limiter = search_algorithm(s, 3)
    assert isinstance(limiter, ConcurrencyLimiter) and isinstance(limiter.searcher, OptunaSearch)
    assert (limiter.searcher.metric, limiter.searcher.mode, limiter.max_concurrent) == ("val/psnr", "max", 3)
    first = _suggestions(limiter, s, 4)
    assert first[0] == {"p0": 1.0, "p1": 50}  # the as-written edge weight and adversarial start
    assert first[3] is None  # three live trials: the fourth waits
    assert all(0.05 <= p["p0"] <= 5.0 and p["p1"] in (50, 150) for p in first[1:3])
    # TPE seeded from the search seed: the same proposals again, others at another seed
    assert _suggestions(search_algorithm(s, 3), s, 3) == first[:3]
    other = dataclasses.replace(s, tune=dataclasses.replace(s.tune, search_seed=8))
    assert _suggestions(search_algorithm(other, 3), other, 3)[1:] != first[1:3]
    low = dataclasses.replace(s, tune=dataclasses.replace(s.tune, mode="min"))
    assert search_algorithm(low, 1).searcher.mode == "min"
    # the other combination: its own keys and as-written values, in its own key order
    assert _suggestions(search_algorithm(_setup(tmp_path, "fast"), 2), _setup(tmp_path, "fast"), 1) == [
        {"p0": 3.0e-4, "p1": 1.0}]


def test_random_search_proposes_the_as_written_point_first_seeded_and_carries_the_cap(tmp_path):
    from ray.tune.search.basic_variant import BasicVariantGenerator

    def proposals(setup, concurrent: int) -> list:
        gen = search_algorithm(setup, concurrent)
        assert type(gen) is BasicVariantGenerator and gen.max_concurrent == concurrent
        gen.add_configurations({"s": {"run": lambda config: None, "config": _param_space(setup),
                                      "num_samples": setup.tune.budget, "storage_path": str(tmp_path / "ray")}})
        return [t if t is None else t.config for t in (gen.next_trial() for _ in range(concurrent + 1))]

    s = _setup(tmp_path, algorithm="random")
    first = proposals(s, 2)
    assert first[0] == {"p0": 1.0, "p1": 50} and first[2] is None  # as written first; the cap of 2
    assert first[1] != first[0] and 0.05 <= first[1]["p0"] <= 5.0
    assert proposals(s, 2) == first  # seeded from the search seed
    other = dataclasses.replace(s, tune=dataclasses.replace(s.tune, search_seed=8))
    assert proposals(other, 2)[1] != first[1]


@pytest.mark.bad_input
def test_an_as_written_value_outside_a_choice_is_refused_at_load_or_proposed_first(tmp_path):
    """Either contract is sound: the loader refuses the space naming the key, or the searcher
    proposes the as-written point first (as the random searcher does)."""
    try:
        s = _setup(tmp_path, choices="100, 150")
    except ConfigError as e:
        assert "tune.space.log_loss.losses.adversarial.start_step" in str(e)
        return
    assert _suggestions(search_algorithm(s, 2), s, 1) == [{"p0": 1.0, "p1": 50}]


# ---------------------------------------------------------------- the scheduler, driven by hand


def test_asha_stops_on_the_objective_at_step_rungs_from_grace_steps_to_train_steps(tmp_path):
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    s = _setup(tmp_path)
    asha = scheduler(s)
    assert type(asha) is ASHAScheduler and REDUCTION_FACTOR == 3
    trials = {name: types.SimpleNamespace(trial_id=name) for name in "abcdefg"}
    for t in trials.values():
        asha.on_trial_add(None, t)

    def report(name: str, step: int, psnr: float | None = None, **extra) -> str:
        result = {"step": step, **extra} if psnr is None else {"step": step, "val/psnr": psnr, **extra}
        return asha.on_trial_result(None, trials[name], result)

    go, stop = TrialScheduler.CONTINUE, TrialScheduler.STOP
    assert report("a", 49, 1.0) == go  # before grace_steps no trial is judged
    assert report("a", 50, 30.0) == go  # the first at the rung
    assert report("b", 50, 20.0) == stop  # below the cutoff (val/psnr is maximised)
    assert report("c", 50, 40.0) == go
    assert report("d", 50, 35.0) == go
    # rung 50 holds 30, 40, 35 (and b's 20); reduction factor 3 cuts at the 2/3 percentile
    # of the recorded (36.67 with b's 20: a halving factor 2 would cut at the median 32.5)
    assert report("e", 50, 34.0) == stop and report("f", 50, 37.0) == go
    assert report("a", 150, 30.0) == go  # the second rung: 50 x 3
    assert report("c", 150, 25.0) == stop
    assert report("d", 150, 10.0) == stop
    assert report("f", 200, 99.0) == stop  # train.steps: the last step ends it, the best so far too
    assert report("g", 500) == go  # no objective in the result: not judged
    assert asha.on_trial_result(None, trials["g"], {"training_iteration": 500, "val/psnr": 0.0}) == go  # steps, not iterations

    low = scheduler(dataclasses.replace(s, tune=dataclasses.replace(s.tune, mode="min")))
    for t in trials.values():
        low.on_trial_add(None, t)
    assert low.on_trial_result(None, trials["a"], {"step": 50, "val/psnr": 30.0}) == go
    assert low.on_trial_result(None, trials["b"], {"step": 50, "val/psnr": 20.0}) == go  # lower is better
    assert low.on_trial_result(None, trials["c"], {"step": 50, "val/psnr": 40.0}) == stop


def test_no_scheduler_is_tunes_fifo_which_stops_nothing(tmp_path):
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    fifo = scheduler(_setup(tmp_path, scheduler="none"))
    assert type(fifo) is FIFOScheduler  # ASHA is a FIFOScheduler too: the exact type
    t = types.SimpleNamespace(trial_id="a")
    assert fifo.on_trial_result(None, t, {"step": 50, "val/psnr": -1e9}) == TrialScheduler.CONTINUE


# ---------------------------------------------------------------- a finished search's trials


@dataclass
class FakeResult:
    """The parts of a Tune Result that `trial_rows` reads."""
    metrics: dict | None
    config: dict
    error: Exception | None = None
    path: str = ""


def _results() -> list[FakeResult]:
    def cfg(w, start):
        return {"p0": np.float64(w), "p1": np.int64(start)}

    return [
        FakeResult({"trial_id": "t0", "val/psnr": 20.0, "final": True, "step": 200, "time_total_s": 12.5,
                    "time/startup_s": 3.0, "checkpoint_path": "/exp/ck0"}, cfg(1.0, 50)),  # the as-written point
        FakeResult({"trial_id": "t1", "val/psnr": 25.0, "step": 50}, cfg(0.5, 150)),  # stopped by the scheduler
        FakeResult({"trial_id": "t2", "val/psnr": 30.0, "final": True, "step": 200}, cfg(0.6, 50),
                   error=RuntimeError("worker died")),
        FakeResult({"trial_id": "t3", "config_error": "bad options", "final": True, "step": 0}, cfg(0.7, 50)),
        FakeResult({"trial_id": "t4", "val/psnr": math.nan, "final": True, "step": 120,
                    "stop_reason": "non-finite loss"}, cfg(4.0, 150)),
        FakeResult({"trial_id": "t5", "val/psnr": 22.0, "step": 60, "stop_reason": "diverged"}, cfg(3.0, 50)),
        FakeResult(None, cfg(0.9, 150), error=RuntimeError("no report"), path="/exp/search/log_loss/"
                   "log_loss-search-abcde_00006"),  # failed before its first report
        FakeResult({"trial_id": "t7", "final": True, "step": 200}, cfg(1.1, 50)),  # no objective reported
    ]


@pytest.mark.parametrize("sched, unfinished", [("asha", "pruned"), ("none", "incomplete")])
def test_trial_rows_give_each_trial_its_status_order_point_and_objective(tmp_path, sched, unfinished):
    s = _setup(tmp_path, scheduler=sched)
    rows = trial_rows(s, _results())
    assert [r["status"] for r in rows] == ["done", unfinished, "error", "error", "error", "error", "error", "done"]
    assert [r["order"] for r in rows] == list(range(8))  # Tune's creation order
    assert [r["default"] for r in rows] == [True] + [False] * 7
    assert [r["trial_id"] for r in rows] == ["t0", "t1", "t2", "t3", "t4", "t5", "abcde_00006", "t7"]
    assert rows[6]["trial"] == "log_loss-search-abcde_00006"
    assert {r["combination"] for r in rows} == {"log_loss"} and {r["seed"] for r in rows} == {7}
    assert [r["objective"] for r in rows[:3]] == [20.0, 25.0, 30.0]
    assert [math.isnan(r["objective"]) for r in rows[3:]] == [True, True, False, True, True]
    assert [(r["param.losses.edge.weight"], r["param.losses.adversarial.start_step"]) for r in rows[:2]] == [
        (1.0, 50), (0.5, 150)]
    assert type(rows[1]["param.losses.edge.weight"]) is float and type(rows[1]["param.losses.adversarial.start_step"]) is int
    first = rows[0]
    assert (first["steps"], first["wall_time_s"], first["startup_s"], first["checkpoint"]) == (200, 12.5, 3.0, "/exp/ck0")
    assert rows[6]["steps"] is None and rows[6]["checkpoint"] is None
    assert set(first) == {"combination", "trial", "trial_id", "order", "default", "seed", "status", "steps", "objective",
                          "param.losses.edge.weight", "param.losses.adversarial.start_step", "wall_time_s", "startup_s",
                          "checkpoint"}


def _row(order: int, status: str, objective: float) -> dict:
    return {"trial": f"log_loss-search-t{order}", "order": order, "status": status, "objective": objective}


def test_the_best_row_is_the_best_finished_objective_ties_to_the_earlier_trial(tmp_path):
    s = _setup(tmp_path)
    rows = [_row(0, "done", 20.0), _row(1, "pruned", 99.0), _row(2, "error", 98.0), _row(3, "done", math.nan),
            _row(4, "done", 24.0), _row(5, "done", 24.0), _row(6, "done", 21.0), _row(7, "incomplete", 97.0)]
    assert best_row(s, rows)["order"] == 4  # max; 5 ties it later; pruned, errored, NaN never chosen
    low = dataclasses.replace(s, tune=dataclasses.replace(s.tune, mode="min"))
    assert best_row(low, rows)["order"] == 0
    assert best_row(low, [*rows, _row(8, "done", 20.0)])["order"] == 0  # a tie: the earlier
    assert best_row(low, [_row(8, "done", 20.0), *rows])["order"] == 0  # by order, not by place in the list
    assert best_row(s, trial_rows(s, _results()))["trial"] == "log_loss-search-t0"


@pytest.mark.bad_input
def test_a_search_where_no_trial_finished_is_refused_naming_it_and_each_trials_status(tmp_path):
    s = _setup(tmp_path)
    rows = [_row(0, "pruned", 20.0), _row(1, "error", 25.0), _row(2, "done", math.nan)]
    with pytest.raises(ConfigError) as e:
        best_row(s, rows)
    assert str(e.value).startswith("tune.space.log_loss: no stage-1 trial finished (log_loss-search-t0 pruned, "
                                   "log_loss-search-t1 error, log_loss-search-t2 done); stage 2 has no point")
    assert "--resume" in str(e.value)


def test_the_chosen_point_is_the_best_rows_point_objective_and_steps(tmp_path):
    s = _setup(tmp_path)
    rows = trial_rows(s, _results())
    picked = chosen_point(s, rows[0])
    assert picked == ChosenPoint(point={"losses.edge.weight": 1.0, "losses.adversarial.start_step": 50},
                                 trial="log_loss-search-t0", objective=20.0, steps=200)


def test_stage_two_trains_searched_combinations_at_their_point_with_their_own_seeds(tmp_path):
    grid = _grid(tmp_path)
    record = TuningRecord(tune=grid.tune.record(), chosen={"log_loss": ChosenPoint(
        point={"losses.edge.weight": 0.3, "losses.adversarial.start_step": 150}, trial="log_loss-search-t4",
        objective=21.0, steps=200)})
    tuned = tuned_grid(grid, record)
    assert dataclasses.replace(tuned, trials=grid.trials) == grid  # name, source, tune: as they were
    assert [(t.combination, t.seed) for t in tuned.trials] == [(t.combination, t.seed) for t in grid.trials]
    for before, after in zip(grid.trials, tuned.trials):
        if before.combination != "log_loss":
            assert after == before  # `none`, and `fast` with no point chosen yet: as written
            continue
        assert {ls.name: (ls.weight, ls.start_step) for ls in after.losses} == {
            "l1": (1.0, 0), "codebook": (1.0, 0), "adversarial": (0.5, 150), "edge": (0.3, 0)}
        assert after.prior == before.prior is not None and after.train == before.train
    assert tuned_grid(grid, TuningRecord(tune=grid.tune.record())) == grid


# ---------------------------------------------------------------- search/chosen.json


def test_chosen_json_round_trips_and_is_absent_before_any_search_ended(tmp_path):
    grid = _grid(tmp_path)
    out = tmp_path / "exp"
    assert read_chosen(out) is None
    record = TuningRecord(tune=grid.tune.record(), chosen={"fast": ChosenPoint(
        point={"train.lr": 2.5e-4, "losses.l1.weight": 1.5}, trial="fast-search-t1", objective=22.5, steps=200)})
    write_chosen(out, record)
    assert read_chosen(out) == record
    assert json.loads(Path(ExperimentLayout(out).search_chosen).read_text())["chosen"]["fast"]["steps"] == 200


@pytest.mark.bad_input
@pytest.mark.parametrize("text, says", [
    (b'{"tune": {', "unreadable (Expecting"),
    (b"\xff\xfe{}", "unreadable ("),
    (b"[]", "top level is a list, expected an object; not a search record `ablate launch` wrote"),
    (b'{"chosen": {}}', "tune missing"),
    (b'{"tune": {}, "chosen": {"fast": {"point": {}, "trial": "x", "objective": 1.0, "steps": -1}}}',
     "chosen.fast.steps"),
    (b'{"tune": {}, "chosen": {"fast": {"point": {}, "trial": "x", "objective": "high", "steps": 3}}}',
     "chosen.fast.objective"),
])
def test_a_damaged_chosen_json_is_refused_naming_the_file_and_the_key(tmp_path, text, says):
    path = Path(ExperimentLayout(tmp_path).search_chosen)
    path.parent.mkdir(parents=True)
    path.write_bytes(text)
    with pytest.raises(ConfigError) as e:
        read_chosen(tmp_path)
    assert str(e.value).startswith(f"{path}: ") and says in str(e.value), str(e.value)


# ---------------------------------------------------------------- the splits shared by a search's trials


@pytest.mark.usefixtures("no_ray_start")
def test_splits_over_cache_mb_are_not_shared_and_under_it_are_decoded_once(tmp_path, monkeypatch, drive32, capsys):
    import ablate.data.stream

    calls = []

    class Decoded:
        def __init__(self, *args, **kwargs):
            calls.append((args, kwargs))

        def materialize(self):
            return f"decoded {calls[-1][0][1]}"

    monkeypatch.setattr(ablate.data.stream, "split_dataset", Decoded)
    # DRIVE's 32 px train split is about 0.06 MiB decoded
    for cache_mb in (0, 0.01):
        assert shared_splits(_setup(tmp_path, cache_mb=cache_mb), str(drive32)) is None
        assert f"the decoded train split is over data.cache_mb {cache_mb:g}; each trial streams it" in (
            capsys.readouterr().out)
    assert not calls
    assert shared_splits(_setup(tmp_path, cache_mb=1), str(drive32)) == {"train": "decoded train", "val": "decoded val"}
    assert calls == [((str(drive32), "train", 32), {"verify": False}), ((str(drive32), "val", 32), {"verify": False})]
    assert not RAY_STARTS


# ---------------------------------------------------------------- what a launch counts and prints


def test_the_stages_line_counts_both_stages(tmp_path):
    from ablate.train.launch import stages_line

    grid = _grid(tmp_path)  # two searches of budget 5; three combinations x three seeds
    assert stages_line(grid) == (
        "tuned arms: stage 1 searches log_loss (losses.edge.weight, losses.adversarial.start_step), fast (train.lr, "
        "losses.l1.weight): 2 x 5 = 10 trials at seed 7 on train/val (optuna search, asha scheduler, objective "
        "val/psnr); stage 2 retrains each at its chosen point: the 9 trials above")


def test_stage_one_wall_time_is_each_search_budget_on_the_slots_one_search_after_another(tmp_path):
    from ablate.train.launch import search_wall

    grid = _grid(tmp_path)
    # estimate()'s shape: (combination names, probe, trials, seconds per trial); `none` is not searched
    result = {"configs": [(["log_loss"], None, 3, 100.0), (["fast", "none"], None, 6, 40.0)], "wall_s": 1234.0}
    assert search_wall(grid, result, 2) == 300.0 + 120.0  # 5 trials on 2 slots: 3 rounds each
    assert search_wall(grid, result, 5) == 100.0 + 40.0
    assert search_wall(grid, result, 1) == 500.0 + 200.0
    slow_none = {**result, "configs": [(["log_loss"], None, 3, 100.0), (["fast"], None, 3, 40.0),
                                       (["none"], None, 3, 1e6)]}
    assert search_wall(grid, slow_none, 2) == 420.0


@pytest.mark.bad_input
@pytest.mark.usefixtures("no_ray_start")
def test_search_only_on_a_grid_without_tune_is_refused_before_anything_is_read(tmp_path, capsys):
    from ablate.pipeline import LaunchOptions, prepare_launch

    grid = _grid_file(tmp_path, tune=False)
    with pytest.raises(ConfigError) as e:
        prepare_launch(LaunchOptions(grid=str(grid), data=str(tmp_path / "no-data"), search_only=True, dry_run=True))
    assert str(e.value) == (f"--search-only: {grid} has no tune: block, so no search to stop after; drop "
                            "--search-only, or add a tune: block (README, Tuned arms)")
    assert capsys.readouterr().out == "" and not RAY_STARTS


def _drop_test_shards(data: Path) -> list[str]:
    paths = shard_paths(data, "test", verify=False)
    for p in paths:
        Path(p).unlink()
    return paths


@pytest.mark.usefixtures("no_ray_start")
def test_a_tuned_dry_run_prints_both_stages_and_never_opens_the_test_split(tmp_path, monkeypatch, data, capsys):
    import ablate.runtime
    from ablate.pipeline import LaunchOptions, prepare_launch

    monkeypatch.setattr(ablate.runtime, "local_resources", lambda: (2.0, 0.0))
    _drop_test_shards(data)
    grid = _grid_file(tmp_path)
    opts = LaunchOptions(grid=str(grid), data=str(data), out=str(tmp_path / "exp"), dry_run=True)
    assert prepare_launch(opts) is None
    out = capsys.readouterr().out
    assert f"grid 'tuned' from {grid}: 9 trials -> {tmp_path / 'exp'}" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("tuned arms:"))
    assert line.startswith("tuned arms: stage 1 searches log_loss (") and ": 2 x 5 = 10 trials at seed 7" in line
    assert line.endswith("stage 2 retrains each at its chosen point: the 9 trials above")
    assert not RAY_STARTS
    # the same grid untuned reads every split it evaluates on: the missing shard is named
    with pytest.raises(DatasetError, match="shard listed in manifest.json is missing"):
        prepare_launch(dataclasses.replace(opts, grid=str(_grid_file(tmp_path, tune=False))))
    assert "tuned arms:" not in capsys.readouterr().out


# ---------------------------------------------------------------- the test split, sealed until stage 2


def test_check_data_without_read_test_opens_no_test_shard_but_checks_its_count(tmp_path, data):
    from ablate.train.grid import check_data

    grid = _grid(tmp_path)
    missing = _drop_test_shards(data)
    assert check_data(str(data), grid, read_test=False)["image_size"] == 32
    with pytest.raises(DatasetError) as e:
        check_data(str(data), grid, read_test=True)
    assert str(e.value) == f"{missing[0]}: shard listed in manifest.json is missing"
    assert check_data(str(data), grid, evaluate=False, read_test=True)["image_size"] == 32  # no evaluation, no test
    # no test split at all (its shards out of the manifest too): refused though no shard is opened
    manifest = read_manifest_json(data)
    write_manifest_json(data, {**manifest, "counts": {**manifest["counts"], "test": 0},
                               "shards": [s for s in manifest["shards"] if s["split"] != "test"]})
    with pytest.raises(DatasetError, match="the test split is empty .evaluation reads it; --no-evaluate skips it."):
        check_data(str(data), grid, read_test=False)


@pytest.mark.bad_input
def test_verify_test_split_refuses_a_missing_or_altered_test_shard(data):
    from ablate.train.grid import verify_test_split

    verify_test_split(str(data))
    shards = shard_paths(data, "test", verify=False)
    first = Path(shards[0])
    first.write_bytes(first.read_bytes()[:-1] + bytes([first.read_bytes()[-1] ^ 1]))
    with pytest.raises(DatasetError, match=f"{first}: checksum differs from manifest.json"):
        verify_test_split(str(data))
    first.unlink()
    with pytest.raises(DatasetError, match=f"{first}: shard listed in manifest.json is missing"):
        verify_test_split(str(data))
