"""How one point of a combination's `tune:` space (`ablate.specs.TuneSpec`) becomes a trial
spec (`apply_point`), and the as-written point stage 1 runs first (`default_point`).

Tuned arms run in two stages (ablate/train/search.py, ablate/pipeline.py): stage 1 searches
each combination's space on the train and val splits only, at the search seed; stage 2
retrains each combination's best point with the search space's `seeds:` (disjoint from the
search seed) and evaluates them on test as an untuned grid is.

A leaf like `specs.py`: no torch, no Ray.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ablate.specs import ConfigError, Distribution, TrialSpec, split_key


def apply_point(spec: TrialSpec, point: dict[str, Any], seed: int | None = None) -> TrialSpec:
    """`spec` with each searched key set to the point's value (and the seed, when given).

    Args:
        spec: the combination's trial as written.
        point: {searched key: value}, as `TuneSpec.space` names them.
        seed: the trial's new seed (the search seed in stage 1); None keeps the spec's.

    Raises:
        ConfigError: a key names a term the trial does not have, or a value no trial takes.
    """
    losses = list(spec.losses)
    train = spec.train
    for key, value in point.items():
        parts = split_key(key)
        if parts[0] == "train":
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"combinations.{spec.combination}: {key} = {value!r}; a learning rate is a number > 0")
            train = dataclasses.replace(train, lr=float(value))
            continue
        _, term, name = parts
        at = [i for i, ls in enumerate(losses) if ls.name == term]
        if not at:
            raise ConfigError(f"combinations.{spec.combination}: {key} searches the term {term!r}, which this "
                              f"combination does not have (its terms: {', '.join(ls.name for ls in losses)})")
        if name == "weight":
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"combinations.{spec.combination}: {key} = {value!r}; a searched weight is > 0 "
                                  "(a weight of 0 removes the term: that is another arm, not a weight)")
            losses[at[0]] = dataclasses.replace(losses[at[0]], weight=float(value))
        else:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"combinations.{spec.combination}: {key} = {value!r}; a start step is an "
                                  "integer >= 0")
            losses[at[0]] = dataclasses.replace(losses[at[0]], start_step=int(value))
    return dataclasses.replace(spec, losses=tuple(losses), train=train,
                               seed=spec.seed if seed is None else seed)


def default_point(spec: TrialSpec, keys: dict[str, Distribution]) -> dict[str, Any]:
    """The as-written values of the searched keys: the untuned default stage 1 runs first."""
    point: dict[str, Any] = {}
    for key in keys:
        parts = split_key(key)
        if parts[0] == "train":
            point[key] = getattr(spec.train, parts[1])
        else:
            ls = next(ls for ls in spec.losses if ls.name == parts[1])
            point[key] = getattr(ls, parts[2])
    return point


__all__ = ["apply_point", "default_point"]
