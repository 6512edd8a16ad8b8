"""One point of a combination's `tune:` space made a trial spec (ablate.tuning.apply_point), the
as-written point (default_point), and the TuneSpec / split_key vocabulary they use
(ablate.specs). Specs are built here directly: no YAML, no Ray."""

from __future__ import annotations

import dataclasses
import math

import pytest

from ablate.specs import (
    ConfigError,
    DataSpec,
    Distribution,
    DistributionKind,
    LossSpec,
    ModelSpec,
    PriorSpec,
    SchedulerChoice,
    SearchAlgorithm,
    TrainSpec,
    TrialSpec,
    TuneSpec,
    split_key,
)
from ablate.tuning import apply_point, default_point

U = Distribution(DistributionKind.uniform, (0.5, 2.0))


def _spec(**kw) -> TrialSpec:
    """The combination `edge` as written: three terms (one starting late), lr 1e-4, seed 3, a prior."""
    return TrialSpec(
        combination="edge", seed=3, data=DataSpec(size=32), model=ModelSpec(preset="tiny"),
        train=TrainSpec(steps=200, lr=1.0e-4),
        losses=(LossSpec("l1", weight=1.0), LossSpec("adversarial", weight=0.5, start_step=50),
                LossSpec("edge", weight=2.0, options={"family": "log"})),
        prior=PriorSpec(steps=10), **kw)


def test_a_point_sets_each_searched_key_and_nothing_else():
    spec = _spec()
    out = apply_point(spec, {"losses.edge.weight": 0.25, "losses.adversarial.start_step": 120, "train.lr": 3e-5})
    assert [(ls.name, ls.weight, ls.start_step) for ls in out.losses] == [
        ("l1", 1.0, 0), ("adversarial", 0.5, 120), ("edge", 0.25, 0)]
    assert out.train == dataclasses.replace(spec.train, lr=3e-5)
    assert out.losses[2].options == {"family": "log"}  # the term's own options untouched
    # everything else as written: seed, data, model, prior
    assert dataclasses.replace(out, losses=spec.losses, train=spec.train) == spec
    assert spec.losses[2].weight == 2.0 and spec.train.lr == 1.0e-4  # the input spec is not changed
    # the value's type as a spec holds it: a weight and an lr are floats, a start step an int
    out = apply_point(spec, {"losses.edge.weight": 3, "train.lr": 1})
    assert type(out.losses[2].weight) is float and type(out.train.lr) is float
    assert type(apply_point(spec, {"losses.adversarial.start_step": 0}).losses[1].start_step) is int


def test_the_seed_argument_replaces_the_seed_and_none_keeps_it():
    spec = _spec()
    assert apply_point(spec, {"losses.edge.weight": 1.5}).seed == 3
    assert apply_point(spec, {"losses.edge.weight": 1.5}, seed=11).seed == 11
    assert apply_point(spec, {}, seed=0).seed == 0  # 0 is a seed, not "none given"
    assert apply_point(spec, {}) == spec


def test_default_point_is_the_as_written_values_in_the_keys_order():
    spec = _spec()
    keys = {"train.lr": U, "losses.adversarial.start_step": U, "losses.edge.weight": U}
    point = default_point(spec, keys)
    assert list(point.items()) == [("train.lr", 1.0e-4), ("losses.adversarial.start_step", 50),
                                   ("losses.edge.weight", 2.0)]
    assert type(point["losses.adversarial.start_step"]) is int
    # the as-written point applied is the spec itself
    assert apply_point(spec, point) == spec
    assert default_point(spec, {}) == {}


@pytest.mark.bad_input
@pytest.mark.parametrize("key, value, says", [
    ("losses.lpips.weight", 1.0, ("losses.lpips.weight searches the term 'lpips', which this combination does not "
                                  "have (its terms: l1, adversarial, edge)")),
    ("losses.lpips.start_step", 5, "searches the term 'lpips', which this combination does not have"),
    ("losses.edge.weight", 0, "losses.edge.weight = 0; a searched weight is > 0"),
    ("losses.edge.weight", 0.0, "losses.edge.weight = 0.0; a searched weight is > 0"),
    ("losses.edge.weight", -0.5, "losses.edge.weight = -0.5; a searched weight is > 0"),
    ("losses.edge.weight", True, "losses.edge.weight = True; a searched weight is > 0"),
    ("losses.edge.weight", math.nan, "losses.edge.weight = nan; a searched weight is > 0"),
    ("losses.edge.weight", math.inf, "losses.edge.weight = inf; a searched weight is > 0"),
    ("losses.edge.weight", "1", "losses.edge.weight = '1'; a searched weight is > 0"),
    ("losses.adversarial.start_step", -1, "losses.adversarial.start_step = -1; a start step is an integer >= 0"),
    ("losses.adversarial.start_step", 2.5, "losses.adversarial.start_step = 2.5; a start step is an integer >= 0"),
    ("losses.adversarial.start_step", 10.0, "losses.adversarial.start_step = 10.0; a start step is an integer"),
    ("losses.adversarial.start_step", True, "losses.adversarial.start_step = True; a start step is an integer"),
    ("train.lr", 0, "train.lr = 0; a learning rate is a number > 0"),
    ("train.lr", -1e-4, "train.lr = -0.0001; a learning rate is a number > 0"),
    ("train.lr", math.nan, "train.lr = nan; a learning rate is a number > 0"),
    ("train.lr", "1e-4", "train.lr = '1e-4'; a learning rate is a number > 0"),
])
def test_a_value_no_trial_takes_is_refused_naming_the_combination_and_key(key, value, says):
    with pytest.raises(ConfigError) as e:
        apply_point(_spec(), {key: value})
    assert str(e.value).startswith("combinations.edge: ") and says in str(e.value), str(e.value)


@pytest.mark.bad_input
def test_a_bool_learning_rate_is_refused_as_a_bool_weight_is():
    with pytest.raises(ConfigError, match="train.lr = True; a learning rate is a number > 0"):
        apply_point(_spec(), {"train.lr": True})


@pytest.mark.bad_input
def test_a_key_that_is_not_searchable_is_refused_before_any_value_is_read():
    with pytest.raises(ValueError, match="'losses.edge.sigma' is not a key stage 1 searches"):
        apply_point(_spec(), {"losses.edge.sigma": 1.0})


@pytest.mark.parametrize("key, parts", [("losses.edge.weight", ("losses", "edge", "weight")),
                                        ("losses.adversarial.start_step", ("losses", "adversarial", "start_step")),
                                        ("train.lr", ("train", "lr"))])
def test_split_key_splits_what_stage_1_may_search(key, parts):
    assert split_key(key) == parts


@pytest.mark.bad_input
@pytest.mark.parametrize("key", ["losses.edge.options", "losses..weight", "losses.edge", "train.steps",
                                 "train.lr.x", "data.size", "lr", ""])
def test_split_key_refuses_the_rest_naming_what_may_be(key):
    with pytest.raises(ValueError) as e:
        split_key(key)
    assert str(e.value) == (f"{key!r} is not a key stage 1 searches; searchable: losses.<term>.{{weight,start_step}}, "
                            "train.{lr}")


def test_tune_spec_record_is_its_json_fingerprint_and_searched_names_the_combinations_keys():
    space = {"b": {"train.lr": Distribution(DistributionKind.loguniform, (1e-5, 1e-3))},
             "a": {"losses.edge.weight": Distribution(DistributionKind.choice, (1, 2.5)),
                   "losses.l1.start_step": Distribution(DistributionKind.randint, (0, 10))}}
    t = TuneSpec(objective="val/psnr", mode="max", budget=6, algorithm=SearchAlgorithm.random,
                 scheduler=SchedulerChoice.none, space=space, search_seed=4, grace_steps=25)
    assert t.record() == {
        "objective": "val/psnr", "mode": "max", "budget": 6, "algorithm": "random", "scheduler": "none",
        "search_seed": 4, "grace_steps": 25,
        "space": {"a": {"losses.edge.weight": {"choice": [1, 2.5]}, "losses.l1.start_step": {"randint": [0, 10]}},
                  "b": {"train.lr": {"loguniform": [1e-5, 1e-3]}}}}
    assert list(t.record()["space"]) == ["a", "b"]  # sorted: the fingerprint does not depend on YAML order
    assert t.searched("a") is space["a"] and t.searched("c") == {}
    assert [str(e) for e in (SearchAlgorithm.optuna, SchedulerChoice.asha, DistributionKind.loguniform)] == [
        "optuna", "asha", "loguniform"]
    assert Distribution(DistributionKind.uniform, (0.5, 2.0)).describe() == "uniform[0.5, 2.0]"
