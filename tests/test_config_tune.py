"""The `tune:` block of a search space (ablate.config_tune -> ablate.specs.TuneSpec): the example
parses into the exact spec with its defaults, '*' merges under each combination's own entry,
every refusal names the file, the key path under `tune` and the fix, and the schema shows it."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from ablate.config import SearchSpaceFile, load_grid, resolve_grid, search_space_schema
from ablate.config_tune import TUNE_KEYS
from ablate.specs import ConfigError, Distribution, DistributionKind, SchedulerChoice, SearchAlgorithm, TuneSpec

GRID = """
name: tuned
base:
  data: {{size: 32}}
  model: {{preset: tiny}}
  train: {{steps: 200, batch_size: 2, val_every: 100, checkpoint_every: 150}}
  losses:
    l1: {{weight: 1.0}}
    codebook: {{weight: 1.0}}
    adversarial: {{weight: 0.5, start_step: 50}}
combinations:
  none: {none}
  log_loss:
    losses: {{edge: {{weight: 1.0, family: log, channel: green, sigma: 1.0}}}}
seeds: {seeds}
{tune}
"""

# The block as the issue writes it.
EXAMPLE = """
tune:
  objective: val/psnr
  budget: 8
  algorithm: optuna
  scheduler: asha
  seed: 100
  grace_steps: 50
  space:
    log_loss:
      losses.edge.weight: {loguniform: [0.05, 5]}
      losses.adversarial.start_step: {choice: [50, 1000]}
"""

# The same with only the required keys, and a space of {SPACE}.
PLAIN = """
tune:
  objective: val/psnr
  budget: 4
  algorithm: random
  scheduler: none
  space: {space}
"""
EDGE_WEIGHT = "{log_loss: {losses.edge.weight: {uniform: [0.5, 2]}}}"


def _write(tmp_path: Path, tune: str, none: str = "{}", seeds: str = "[0, 1, 2]") -> Path:
    p = tmp_path / "g.yaml"
    p.write_text(GRID.format(none=none, seeds=seeds, tune=tune))
    return p


def _grid(tmp_path: Path, tune: str, **kw):
    return load_grid(_write(tmp_path, tune, **kw))


def _refused(tmp_path: Path, tune: str, **kw) -> str:
    p = _write(tmp_path, tune, **kw)
    with pytest.raises(ConfigError) as e:
        load_grid(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: tune") and "\n" not in msg, msg
    return msg


def _space(space: str) -> str:
    return PLAIN.format(space=space)


def test_the_example_parses_into_the_exact_tune_spec(tmp_path):
    g = _grid(tmp_path, EXAMPLE)
    assert g.tune == TuneSpec(
        objective="val/psnr", mode="max", budget=8, algorithm=SearchAlgorithm.optuna,
        scheduler=SchedulerChoice.asha, search_seed=100, grace_steps=50,
        space={"log_loss": {"losses.edge.weight": Distribution(DistributionKind.loguniform, (0.05, 5.0)),
                            "losses.adversarial.start_step": Distribution(DistributionKind.choice, (50, 1000))}})
    assert g.tune.searched("none") == {}  # not in the space: stage 2 retrains it as written
    assert len(g.trials) == 6  # the grid itself is unchanged by tune:
    # choices keep their type (start steps are integers); a continuous range is floats
    assert [type(v) for v in g.tune.space["log_loss"]["losses.adversarial.start_step"].args] == [int, int]
    assert g.tune.record()["space"] == {"log_loss": {"losses.edge.weight": {"loguniform": [0.05, 5.0]},
                                                     "losses.adversarial.start_step": {"choice": [50, 1000]}}}


@pytest.mark.parametrize("seeds, search_seed", [("[0, 1, 2]", 3), ("[0, 2]", 1), ("[5]", 0)])
def test_the_search_seed_defaults_to_the_smallest_integer_not_in_seeds(tmp_path, seeds, search_seed):
    assert _grid(tmp_path, _space(EDGE_WEIGHT), seeds=seeds).tune.search_seed == search_seed


def test_grace_steps_default_to_the_first_val_report_of_the_searched_trials(tmp_path):
    """A report validates at val_every, checkpoint_every and the end: the first is the smallest,
    over the searched combinations only (`none`'s shorter steps do not count while it is not searched)."""
    assert _grid(tmp_path, _space(EDGE_WEIGHT)).tune.grace_steps == 100  # val_every 100 < checkpoint_every 150
    short = "{train: {val_every: 500, checkpoint_every: 30, steps: 40}}"
    assert _grid(tmp_path, _space(EDGE_WEIGHT), none=short).tune.grace_steps == 100
    assert _grid(tmp_path, _space("{'*': {losses.l1.weight: {uniform: [0.5, 2]}}}"), none=short).tune.grace_steps == 30
    ends_first = "{train: {val_every: 500, checkpoint_every: 500, steps: 20}}"
    assert _grid(tmp_path, _space("{none: {losses.l1.weight: {uniform: [0.5, 2]}}}"),
                 none=ends_first).tune.grace_steps == 20


def test_every_entry_merges_under_each_combinations_own_and_its_own_key_wins(tmp_path):
    g = _grid(tmp_path, _space("""
    '*': {losses.l1.weight: {uniform: [0.5, 2]}, train.lr: {loguniform: [1.0e-6, 1.0e-4]}}
    log_loss: {train.lr: {choice: [1.0e-5, 2.0e-5]}, losses.edge.weight: {randint: [1, 4]}}"""))
    every_l1 = Distribution(DistributionKind.uniform, (0.5, 2.0))
    assert g.tune.space == {
        "none": {"losses.l1.weight": every_l1, "train.lr": Distribution(DistributionKind.loguniform, (1e-6, 1e-4))},
        "log_loss": {"losses.l1.weight": every_l1, "train.lr": Distribution(DistributionKind.choice, (1e-5, 2e-5)),
                     "losses.edge.weight": Distribution(DistributionKind.randint, (1, 4))}}
    assert g.tune.algorithm is SearchAlgorithm.random and g.tune.scheduler is SchedulerChoice.none


def test_an_empty_combination_entry_leaves_that_combination_unsearched(tmp_path):
    g = _grid(tmp_path, _space("{none: {}, log_loss: {losses.edge.weight: {uniform: [0.5, 2]}}}"))
    assert set(g.tune.space) == {"log_loss"}


def test_a_combinations_own_entry_is_checked_in_place_of_the_one_it_overrides(tmp_path):
    """'*' searches the edge weight, which `none` lacks; `none`'s own entry cannot take it back
    (a key is searched or not), so this stays refused, naming where the key came from."""
    msg = _refused(tmp_path, _space("{'*': {losses.edge.weight: {uniform: [0.5, 2]}}}"))
    assert "tune.space.*.losses.edge.weight: combinations.none: losses.edge.weight searches the term 'edge'" in msg


def test_the_randint_extremes_are_low_and_high_minus_one(tmp_path):
    """randint's high is excluded: [0, 1] only draws 0, a valid start step; and [-1, 0] draws -1."""
    ok = _grid(tmp_path, _space("{log_loss: {losses.adversarial.start_step: {randint: [0, 1]}}}"))
    assert ok.tune.space["log_loss"]["losses.adversarial.start_step"].args == (0, 1)
    from ablate.config_tune import _extremes

    assert _extremes(Distribution(DistributionKind.randint, (3, 7))) == (3, 6)
    assert _extremes(Distribution(DistributionKind.choice, (5, 1, 9))) == (5, 1, 9)


@pytest.mark.bad_input
@pytest.mark.parametrize("tune, says", [
    ("tune: [1]", "tune: expected a mapping"),
    (_space(EDGE_WEIGHT).replace("budget: 4", "budgte: 4"),
     ("tune: unknown key(s) ['budgte']; valid: ['objective', 'budget', 'algorithm', 'scheduler', 'space', 'seed', "
     "'grace_steps']")),
    (_space(EDGE_WEIGHT).replace("  budget: 4\n", ""), "tune: missing ['budget']"),
    # the objective
    (_space(EDGE_WEIGHT).replace("val/psnr", "val/loss/l1"), "tune.objective: val/loss/l1 is the training term 'l1'"),
    (_space(EDGE_WEIGHT).replace("val/psnr", "val/loss/total"),
     "tune.objective: val/loss/total is the weighted sum of every arm's training terms"),
    (_space(EDGE_WEIGHT).replace("val/psnr", "val/ssim"), ("tune.objective: 'val/ssim' is not an objective; valid: "
     "['val/psnr']")),
    (_space(EDGE_WEIGHT).replace("val/psnr", "psnr"), "tune.objective: 'psnr' is not an objective"),
    # budget, algorithm, scheduler
    (_space(EDGE_WEIGHT).replace("budget: 4", "budget: 1"), "tune.budget: expected an integer >= 2"),
    (_space(EDGE_WEIGHT).replace("budget: 4", "budget: true"),
     "tune.budget: expected an integer >= 2 (the as-written point and at least one searched), got True"),
    (_space(EDGE_WEIGHT).replace("budget: 4", "budget: 4.0"),
     "tune.budget: expected an integer >= 2 (the as-written point and at least one searched), got 4.0"),
    (_space(EDGE_WEIGHT).replace("algorithm: random", "algorithm: grid"),
     "tune.algorithm: 'grid' is not one of optuna, random"),
    (_space(EDGE_WEIGHT).replace("scheduler: none", "scheduler: hyperband"),
     "tune.scheduler: 'hyperband' is not one of asha, none"),
    # the space's shape
    (_space("[1]"), "tune.space: expected a mapping"),
    (_space("{nope: {losses.l1.weight: {uniform: [0.5, 2]}}}"),
     "tune.space: 'nope' is no combination of this file; its combinations: none, log_loss"),
    (_space("{log_loss: [1]}"), "tune.space.log_loss: expected a mapping of searched key -> distribution"),
    (_space("{log_loss: {losses.edge.sigma: {uniform: [0.5, 2]}}}"),
     "tune.space.log_loss.losses.edge.sigma: 'losses.edge.sigma' is not a key stage 1 searches"),
    (_space("{log_loss: {data.size: {choice: [32]}}}"),
     "tune.space.log_loss.data.size: 'data.size' is not a key stage 1 searches"),
    (_space("{}"), "tune.space: nothing to search"),
    (_space("{none: {}, log_loss: null}"), "tune.space: nothing to search"),
    # distributions
    (_space("{log_loss: {losses.edge.weight: {uniform: [0.5, 2], choice: [1]}}}"),
     "tune.space.log_loss.losses.edge.weight: expected one of {loguniform: [low, high]}"),
    (_space("{log_loss: {losses.edge.weight: {normal: [0, 1]}}}"),
     "tune.space.log_loss.losses.edge.weight: expected one of"),
    (_space("{log_loss: {losses.edge.weight: 1.0}}"), "tune.space.log_loss.losses.edge.weight: expected one of"),
    (_space("{log_loss: {losses.edge.weight: {loguniform: [0, 5]}}}"),
     "tune.space.log_loss.losses.edge.weight.loguniform: low 0 must be > 0"),
    (_space("{log_loss: {losses.edge.weight: {uniform: [2, 1]}}}"),
     "tune.space.log_loss.losses.edge.weight.uniform: low 2 must be < high 1"),
    (_space("{log_loss: {losses.edge.weight: {uniform: [1, 1]}}}"),
     "tune.space.log_loss.losses.edge.weight.uniform: low 1 must be < high 1"),
    (_space("{log_loss: {losses.edge.weight: {uniform: [1, .inf]}}}"),
     "tune.space.log_loss.losses.edge.weight.uniform[1]: expected a finite number, got inf"),
    (_space("{log_loss: {losses.edge.weight: {uniform: [true, 2]}}}"),
     "tune.space.log_loss.losses.edge.weight.uniform[0]: expected a finite number, got True"),
    (_space("{log_loss: {losses.edge.weight: {uniform: [1]}}}"),
     "tune.space.log_loss.losses.edge.weight.uniform: expected a list [low, high], got [1]"),
    (_space("{log_loss: {losses.edge.weight: {randint: [0.5, 3]}}}"),
     "tune.space.log_loss.losses.edge.weight.randint[0]: expected an integer, got 0.5"),
    (_space("{log_loss: {losses.edge.weight: {randint: [3, 3]}}}"),
     "tune.space.log_loss.losses.edge.weight.randint: low 3 must be < high 3"),
    (_space("{log_loss: {losses.edge.weight: {choice: []}}}"),
     "tune.space.log_loss.losses.edge.weight.choice: expected a non-empty list of values"),
    (_space("{log_loss: {losses.edge.weight: {choice: [1, 1.0]}}}"),
     "tune.space.log_loss.losses.edge.weight.choice: [1, 1.0] lists a value twice"),
    (_space("{log_loss: {losses.edge.weight: {choice: [1, fast]}}}"),
     "tune.space.log_loss.losses.edge.weight.choice[1]: expected a finite number, got 'fast'"),
    (_space("{log_loss: {losses.edge.weight: {choice: [1, false]}}}"),
     "tune.space.log_loss.losses.edge.weight.choice[1]: expected a finite number, got False"),
    # values no trial takes (ablate.tuning.apply_point on the extremes)
    (_space("{none: {losses.edge.weight: {uniform: [0.5, 2]}}}"),
     ("tune.space.none.losses.edge.weight: combinations.none: losses.edge.weight searches the term 'edge', which "
     "this combination does not have (its terms: l1, codebook, adversarial)")),
    (_space("{log_loss: {losses.edge.weight: {uniform: [0, 2]}}}"),
     "tune.space.log_loss.losses.edge.weight: combinations.log_loss: losses.edge.weight = 0.0; a searched weight"),
    (_space("{log_loss: {losses.edge.weight: {choice: [1, -2]}}}"),
     "tune.space.log_loss.losses.edge.weight: combinations.log_loss: losses.edge.weight = -2; a searched weight"),
    (_space("{log_loss: {losses.adversarial.start_step: {randint: [-5, 10]}}}"),
     "combinations.log_loss: losses.adversarial.start_step = -5; a start step is an integer >= 0"),
    (_space("{log_loss: {losses.adversarial.start_step: {uniform: [0, 100]}}}"),  # draws floats
     ("tune.space.log_loss.losses.adversarial.start_step: combinations.log_loss: losses.adversarial.start_step = 0.0; "
     "a start step is an integer >= 0")),
    (_space("{log_loss: {losses.adversarial.start_step: {choice: [10, 2.5]}}}"),
     "losses.adversarial.start_step = 2.5; a start step is an integer >= 0"),
    (_space("{'*': {train.lr: {uniform: [0, 1.0e-4]}}}"),
     "tune.space.*.train.lr: combinations.none: train.lr = 0.0; a learning rate is a number > 0"),
    # the search seed and the first rung
    (_space(EDGE_WEIGHT) + "  seed: 1\n", ("tune.seed: 1 is one of seeds: [0, 1, 2]; the stage-2 seeds must be "
     "disjoint from the search seed")),
    (_space(EDGE_WEIGHT) + "  seed: -1\n", "tune.seed: -1 is not a seed; seeds are integers from 0 to 4294967295"),
    (_space(EDGE_WEIGHT) + "  seed: 4294967296\n", "tune.seed: 4294967296 is not a seed"),
    (_space(EDGE_WEIGHT) + "  seed: true\n", "tune.seed: True is not a seed"),
    (_space(EDGE_WEIGHT) + "  grace_steps: 0\n", "tune.grace_steps: expected an integer >= 1, got 0"),
    (_space(EDGE_WEIGHT) + "  grace_steps: 10.0\n", "tune.grace_steps: expected an integer >= 1, got 10.0"),
    (_space(EDGE_WEIGHT) + "  grace_steps: 201\n",
     "tune.grace_steps: 201 is beyond the 200 train.steps of combination 'log_loss'"),
])
def test_a_bad_tune_block_is_refused_naming_file_key_and_fix(tmp_path, tune, says):
    assert says in _refused(tmp_path, tune)


@pytest.mark.bad_input
def test_an_objective_some_arm_trains_on_is_refused_naming_the_arm_and_term(tmp_path):
    """val/psnr is a function of the MSE: an arm with an l2 term trains on it, even one not searched."""
    msg = _refused(tmp_path, _space(EDGE_WEIGHT), none="{losses: {l2: {weight: 0.5}}}")
    assert "tune.objective: combination 'none' trains on val/psnr (l2 term (PSNR is a function of the MSE))" in msg
    # an l2 term removed (weight 0 is no objective) is no training objective
    assert _grid(tmp_path, _space(EDGE_WEIGHT), none="{losses: {l2: {weight: 0}}}").tune.objective == "val/psnr"


@pytest.mark.bad_input
def test_grace_steps_count_only_the_searched_trials_and_the_launchs_steps(tmp_path):
    """A shorter unsearched combination does not bound grace_steps; --steps (resolve_grid) does."""
    short = "{train: {steps: 100}}"
    assert _grid(tmp_path, _space(EDGE_WEIGHT) + "  grace_steps: 150\n", none=short).tune.grace_steps == 150
    msg = _refused(tmp_path, _space("{'*': {losses.l1.weight: {uniform: [0.5, 2]}}}") + "  grace_steps: 150\n",
                   none=short)
    assert "tune.grace_steps: 150 is beyond the 100 train.steps of combination 'none'" in msg
    p = _write(tmp_path, _space(EDGE_WEIGHT) + "  grace_steps: 150\n")
    with pytest.raises(ConfigError, match=r"tune\.grace_steps: 150 is beyond the 20 train\.steps"):
        resolve_grid(str(p), steps=20)


def test_the_tune_block_survives_only(tmp_path):
    p = _write(tmp_path, EXAMPLE)
    full, run = resolve_grid(str(p), only=("none",))
    assert run.tune == full.tune == load_grid(p).tune and run.tune is not None
    assert {t.combination for t in run.trials} == {"none"}


def test_a_plain_grid_has_no_tune(tmp_path):
    assert _grid(tmp_path, "").tune is None


def test_the_schema_shows_the_tune_block_and_checks_its_space(tmp_path):
    schema = search_space_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert "tune" in schema["properties"]
    block = schema["$defs"]["TuneBlock"]
    assert tuple(block["properties"]) == TUNE_KEYS
    assert block["required"] == ["objective", "budget", "algorithm", "scheduler", "space"]
    assert block["properties"]["objective"]["enum"] == ["val/psnr"]
    raw = yaml.safe_load(_write(tmp_path, EXAMPLE).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(raw)
    SearchSpaceFile.model_validate(raw)  # the pydantic model the schema is made from
    for bad in ({"losses.edge.sigma": {"uniform": [1, 2]}},  # no searchable key
                {"losses.edge.weight": {"uniform": [1, 2], "choice": [1]}},  # two distributions
                {"losses.edge.weight": {"normal": [1, 2]}}):
        raw["tune"]["space"]["log_loss"] = bad
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(raw)


@pytest.mark.bad_input
def test_a_searched_combination_trained_by_epochs_is_refused(tmp_path):
    """ASHA's axis and the search curve count steps: a searched trial by epochs is refused by key."""
    msg = _refused(tmp_path, _space("{none: {losses.l1.weight: {uniform: [0.5, 2]}}}"), none="{train: {epochs: 3}}")
    assert "tune: combination 'none' trains train.epochs 3" in msg and "set train.steps" in msg
    # Unsearched, it may train by epochs (stage 2 trains it as written).
    assert _grid(tmp_path, _space(EDGE_WEIGHT), none="{train: {epochs: 3}}").tune is not None
