"""`tune:` of a search space -> `ablate.specs.TuneSpec`: which combinations' weights, start steps
or learning rate stage 1 searches, on which objective, with what budget.

    tune:
      objective: val/psnr          # a validation metric no arm trains on (OBJECTIVES)
      budget: 8                    # stage-1 trials per combination, the as-written point included
      algorithm: optuna            # or random
      scheduler: asha              # or none
      seed: 100                    # optional; default: the smallest integer >= 0 not in `seeds:`
      grace_steps: 50              # optional; default: the searched trials' first val report
      space:
        log_loss:                  # a combination, or '*' (quoted) for every combination
          losses.edge.weight: {loguniform: [0.05, 5]}
          losses.adversarial.start_step: {choice: [50, 1000]}

Read after the trials (ablate.config.load_grid calls `parse_tune` with them), because each rule
is about them: the objective must be trained on by no arm, each searched key must name a term
the combination has, and every value the space can draw must be one the trial takes
(`ablate.tuning.apply_point` is tried on its extremes). Every refusal names the file and the
key path under `tune`. `TuneBlock` is the same block's shape for `ablate schema`.
"""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from ablate.specs import (
    LOSS_FIELDS,
    OBJECTIVES,
    SEED_MAX,
    TRAIN_FIELDS,
    ConfigError,
    Distribution,
    DistributionKind,
    SchedulerChoice,
    SearchAlgorithm,
    TrialSpec,
    TuneSpec,
    split_key,
)
from ablate.tuning import apply_point

EVERY = "*"  # a `space:` entry for every combination (a combination's own entry adds to it and wins)

# ---- the block's shape, for `ablate schema` (SearchSpaceFile.tune); parse_tune says more.

# The keys split_key accepts, as a pattern an editor can check.
SEARCHABLE = rf"^(losses\.[^.]+\.({'|'.join(LOSS_FIELDS)})|train\.({'|'.join(TRAIN_FIELDS)}))$"


class LogUniformBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loguniform: tuple[float, float] = Field(description="[low, high], 0 < low < high: uniform in log(value)")


class UniformBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uniform: tuple[float, float] = Field(description="[low, high], low < high")


class RandIntBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")
    randint: tuple[int, int] = Field(description="[low, high], integers low <= k < high (high excluded)")


class ChoiceBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")
    choice: list[float] = Field(min_length=1, json_schema_extra={"uniqueItems": True},
                                description="the values, each drawn with equal probability")


# One space entry: {searched key -> distribution}; a key split_key refuses is refused here too.
SearchedKeys = Annotated[dict[Annotated[str, Field(pattern=SEARCHABLE)],
                              LogUniformBlock | UniformBlock | RandIntBlock | ChoiceBlock],
                         Field(json_schema_extra={"additionalProperties": False})]


class TuneBlock(BaseModel):
    """`tune:` tuned arms: stage 1 searches each listed combination's space at one search seed
    (train and val splits only), stage 2 retrains its best point with `seeds:` (ablate/config_tune.py)."""
    model_config = ConfigDict(extra="forbid")
    objective: str = Field(json_schema_extra={"enum": list(OBJECTIVES)},
                           description="the validation metric stage 1 optimises; no arm may train on it")
    budget: int = Field(ge=2, description="stage-1 trials per searched combination, the as-written point (run "
                        "first) included")
    algorithm: SearchAlgorithm = Field(description="how the next point is proposed: optuna (TPE) or random")
    scheduler: SchedulerChoice = Field(description="asha: stop poor trials early at the val reports; none: "
                                       "every trial trains its full steps")
    space: dict[str, SearchedKeys | None] = Field(
        min_length=1, description="a combination's name, or '*' for every combination -> {searched key -> "
        "distribution}; a combination not listed (and no '*') is retrained as written")
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="the seed of every stage-1 trial, never one "
                             "of `seeds:` (default: the smallest integer >= 0 not in `seeds:`)")
    grace_steps: int | None = Field(None, ge=1, description="ASHA's first rung: no trial is stopped before this "
                                    "step (default: the first val report of the searched trials)")


TUNE_KEYS = tuple(TuneBlock.model_fields)
REQUIRED = tuple(name for name, f in TuneBlock.model_fields.items() if f.is_required())


def parse_tune(raw: Any, trials: tuple[TrialSpec, ...], seeds: list[int], where: str) -> TuneSpec:
    """`tune:` read and checked against the grid's trials.

    Args:
        raw: the block as YAML gave it.
        trials: every trial of the grid (after the launch's overrides: --steps reaches grace_steps' check).
        seeds: the grid's `seeds:` (stage 2's), which the search seed must stay out of.
        where: the file and key, e.g. `g.yaml: tune`; every message starts with it.

    Raises:
        ConfigError: the first problem, naming its key path under `tune` and the fix.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with {', '.join(REQUIRED)} (and optionally seed, "
                          f"grace_steps), got {raw!r}")
    unknown = sorted((k for k in raw if k not in TUNE_KEYS), key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid: {list(TUNE_KEYS)}")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise ConfigError(f"{where}: missing {missing}; required: {list(REQUIRED)}")
    objective = _objective(raw["objective"], trials, f"{where}.objective")
    budget = raw["budget"]
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 2:
        raise ConfigError(f"{where}.budget: expected an integer >= 2 (the as-written point and at least one "
                          f"searched), got {budget!r}")
    algorithm = _choice(SearchAlgorithm, raw["algorithm"], f"{where}.algorithm")
    scheduler = _choice(SchedulerChoice, raw["scheduler"], f"{where}.scheduler")
    space = _space(raw["space"], trials, f"{where}.space")
    if algorithm is SearchAlgorithm.optuna:
        _as_written_among_choices(space, trials, f"{where}.space")
    searched = [t for t in trials if t.combination in space]
    return TuneSpec(objective=objective, mode=OBJECTIVES[objective], budget=budget, algorithm=algorithm,
                    scheduler=scheduler, space=space, search_seed=_search_seed(raw.get("seed"), seeds, f"{where}.seed"),
                    grace_steps=_grace_steps(raw.get("grace_steps"), searched, f"{where}.grace_steps"))


def _as_written_among_choices(space: dict[str, dict[str, Distribution]], trials: tuple[TrialSpec, ...],
                              where: str) -> None:
    """Optuna takes the as-written point (the first trial) only where its space holds it: a
    `choice:` without the as-written value would end the search at its first trial."""
    from ablate.tuning import default_point

    for trial in trials:
        keys = space.get(trial.combination, {})
        for key, value in default_point(trial, keys).items():
            d = keys[key]
            if d.kind is DistributionKind.choice and value not in d.args:
                raise ConfigError(f"{where}.{trial.combination}.{key}: the as-written value {value!r} is not among "
                                  f"the choices {list(d.args)}; the search runs the as-written point first, and "
                                  "Optuna only takes a point inside its space: add it to the choices, or use "
                                  "algorithm: random")


def _objective(value: Any, trials: tuple[TrialSpec, ...], where: str) -> str:
    """One of OBJECTIVES that no arm trains on; a val/loss/* is an arm's own term, refused by name."""
    from ablate.report.trained_on import (  # late: the report's metric names load torch
        terms_of_spec,
        trained_on,
    )

    if isinstance(value, str) and value.startswith("val/loss/"):
        term = value.removeprefix("val/loss/")
        what = ("the weighted sum of every arm's training terms" if term == "total"
                else f"the training term {term!r}")
        raise ConfigError(f"{where}: {value} is {what}: the arms are trained to lower it, so it cannot judge "
                          f"their weights fairly; use a validation metric no arm trains on: {list(OBJECTIVES)}")
    if not isinstance(value, str) or value not in OBJECTIVES:
        raise ConfigError(f"{where}: {value!r} is not an objective; valid: {list(OBJECTIVES)}")
    for trial in trials:
        why = trained_on(value.removeprefix("val/"), terms_of_spec(trial))
        if why:
            raise ConfigError(f"{where}: combination {trial.combination!r} trains on {value} ({why}); an objective "
                              "must be a metric no arm of the grid trains on: drop that term, or that combination "
                              "from the grid")
    return value


def _choice(kind: type[SearchAlgorithm | SchedulerChoice], value: Any, where: str) -> Any:
    valid = [m.value for m in kind]
    if not isinstance(value, str) or value not in valid:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(valid)}")
    return kind(value)


def _space(raw: Any, trials: tuple[TrialSpec, ...], where: str) -> dict[str, dict[str, Distribution]]:
    """{combination: {key: Distribution}}: '*' merged under each combination's own entry, every
    extreme value tried on every trial of the combination; combinations with nothing left out."""
    names = list(dict.fromkeys(t.combination for t in trials))
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of combination (or '*') -> {{key: distribution}}, got {raw!r}")
    for entry, keys in raw.items():
        if entry != EVERY and entry not in names:
            raise ConfigError(f"{where}: {entry!r} is no combination of this file; its combinations: "
                              f"{', '.join(names)} (or '*', quoted, for every combination)")
        if keys is not None and not isinstance(keys, dict):
            raise ConfigError(f"{where}.{entry}: expected a mapping of searched key -> distribution, got {keys!r}")
    # {entry: {key: Distribution}}, each key read once where it is written
    read = {entry: {key: _distribution(key, dist, f"{where}.{entry}.{key}") for key, dist in (keys or {}).items()}
            for entry, keys in raw.items()}
    space: dict[str, dict[str, Distribution]] = {}
    for name in names:
        origin = {key: EVERY for key in read.get(EVERY, {})} | {key: name for key in read.get(name, {})}
        if not origin:
            continue
        space[name] = {key: read[entry][key] for key, entry in origin.items()}
        for key, entry in origin.items():
            for value in _extremes(read[entry][key]):
                for trial in (t for t in trials if t.combination == name):
                    try:
                        apply_point(trial, {key: value})
                    except ConfigError as e:
                        raise ConfigError(f"{where}.{entry}.{key}: {e}") from None
    if not space:
        raise ConfigError(f"{where}: nothing to search (no entry names a key); drop tune: for a plain grid")
    return space


def _distribution(key: Any, raw: Any, where: str) -> Distribution:
    """`{kind: args}` with args as the kind needs them (numbers finite, bools refused)."""
    try:
        split_key(str(key))
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    kinds = [k.value for k in DistributionKind]
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in kinds:
        raise ConfigError(f"{where}: expected one of {{loguniform: [low, high]}}, {{uniform: [low, high]}}, "
                          f"{{randint: [low, high]}}, {{choice: [v, ...]}}; got {raw!r}")
    kind, args = next(iter(raw.items()))
    at = f"{where}.{kind}"
    if kind == DistributionKind.choice:
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{at}: expected a non-empty list of values, got {args!r}")
        for i, v in enumerate(args):
            if not _finite(v):
                raise ConfigError(f"{at}[{i}]: expected a finite number, got {v!r}")
        if len(set(args)) != len(args):
            raise ConfigError(f"{at}: {args} lists a value twice; each value once")
        return Distribution(DistributionKind.choice, tuple(args))
    integer = kind == DistributionKind.randint
    if not isinstance(args, list) or len(args) != 2:
        raise ConfigError(f"{at}: expected a list [low, high], got {args!r}")
    for i, v in enumerate(args):
        if not _finite(v) or (integer and not isinstance(v, int)):
            raise ConfigError(f"{at}[{i}]: expected {'an integer' if integer else 'a finite number'}, got {v!r}")
    low, high = args
    if not low < high:
        raise ConfigError(f"{at}: low {low} must be < high {high}")
    if kind == DistributionKind.loguniform and low <= 0:
        raise ConfigError(f"{at}: low {low} must be > 0 (a log-uniform range is of positive values); use "
                          "uniform for a range that reaches 0")
    if integer:
        return Distribution(DistributionKind.randint, (low, high))
    # A continuous range as floats: `5` and `5.0` are one range (grid.json's fingerprint agrees).
    return Distribution(DistributionKind(kind), (float(low), float(high)))


def _extremes(d: Distribution) -> tuple:
    """The values a draw can take at the ends of its range, as the draw's own type (a uniform's
    are floats, so a start step searched with one is refused: start steps are integers)."""
    if d.kind == DistributionKind.choice:
        return d.args
    if d.kind == DistributionKind.randint:
        return (d.args[0], d.args[1] - 1)
    return d.args  # floats already (_distribution)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _search_seed(value: Any, seeds: list[int], where: str) -> int:
    """The given seed, checked; by default the smallest integer >= 0 that no stage-2 seed is."""
    if value is None:
        return next(s for s in itertools.count() if s not in seeds)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise ConfigError(f"{where}: {value!r} is not a seed; seeds are integers from 0 to {SEED_MAX} (2^32-1)")
    if value in seeds:
        raise ConfigError(f"{where}: {value} is one of seeds: {seeds}; the stage-2 seeds must be disjoint from the "
                          "search seed (the chosen point is retrained at seeds it was not picked at); pick another "
                          "seed or leave seed out (the smallest integer not in seeds:)")
    return value


def _grace_steps(value: Any, searched: list[TrialSpec], where: str) -> int:
    """The given first rung, checked against the shortest searched trial; by default the searched
    trials' first val report (a report validates: at val_every, checkpoint_every or the end)."""
    by_epochs = next((t for t in searched if t.train.epochs is not None), None)
    if by_epochs is not None:  # ASHA's time axis and max_t are steps (train/search.py `scheduler`)
        raise ConfigError(f"{where.rsplit('.', 1)[0]}: combination {by_epochs.combination!r} trains "
                          f"train.epochs {by_epochs.train.epochs}; a searched trial trains train.steps (the axis its "
                          "early stopping and the search curve count in): set train.steps and drop train.epochs")
    shortest = min(searched, key=lambda t: t.train.steps)
    if value is None:
        return min(min(t.train.val_every, t.train.checkpoint_every, t.train.steps) for t in searched)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: expected an integer >= 1, got {value!r}")
    if value > shortest.train.steps:
        raise ConfigError(f"{where}: {value} is beyond the {shortest.train.steps} train.steps of combination "
                          f"{shortest.combination!r}, where no trial could be stopped; lower grace_steps or leave it "
                          "out (the first val report)")
    return value


__all__ = ["TuneBlock", "parse_tune"]
