"""One spec dataclass (ablate.specs) read from its YAML mapping: pydantic validates it as the
field types say, and its first error becomes one line in this project's words, naming the
file and the dotted key path (`g.yaml: combinations.a.train.lr: expected a number, got 'x'`).

The messages and their order are those of the hand-written checker pydantic replaced: a
mapping's unknown keys are said before its values, the values in the order written, a
list's length before its items; so the first problem a reader meets going down the file is
the one reported.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ablate.specs import ConfigError

# What each pydantic error type says, in the words of the checker pydantic replaced.
_SAYS = {"bool_type": "expected true/false", "int_type": "expected an integer", "float_type": "expected a number",
         "string_type": "expected a string", "dict_type": "expected a mapping", "dataclass_type": "expected a mapping",
         "finite_number": "must be finite"}
_UNKNOWN_KEY = {"unexpected_keyword_argument", "extra_forbidden", "invalid_key"}  # said of the mapping holding it
_LIST_SHAPE = {"tuple_type", "too_short", "too_long", "missing"}  # said of the list (a `missing` item: too short)


@functools.cache
def _reader(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)  # built on first use: importing the loader stays cheap


def read_spec(cls: type, raw: Any, where: str) -> Any:
    """One spec dataclass (ablate.specs) from its YAML mapping, validated by pydantic as its field
    types say (strict: a bool is no integer, "3" no number); None reads as all defaults.

    Args:
        cls: the spec dataclass, e.g. TrainSpec.
        raw: the mapping from the search space (after merging).
        where: the file and key path of `raw`, e.g. `g.yaml: combinations.a.train`; every
            message starts with it and names the key below it.

    Raises:
        ConfigError: the first problem in the order the file is read (a mapping's unknown keys
            before its values, the values as written, a list's length before its items).
    """
    raw = {} if raw is None else raw
    try:
        return _reader(cls).validate_python(raw)
    except ValidationError as e:
        raise ConfigError(_first_problem(cls, raw, e.errors(), where)) from None


def _first_problem(cls: type, raw: Any, errors: list, where: str) -> str:
    problems = [_problem(cls, raw, error) for error in errors]
    loc, message = min(problems, key=lambda p: _reading_order(raw, p[0]))
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    return f"{where}{path}: {message}"


def _problem(cls: type, raw: Any, error: dict) -> tuple[tuple, str]:
    """(the key path the message is about, the message) of one pydantic error."""
    loc, kind = tuple(error["loc"]), error["type"]
    if kind in _UNKNOWN_KEY:
        loc = loc[:-1]
        names = sorted(f.name for f in dataclasses.fields(_type_at(cls, loc)))
        extra = set(_value_at(raw, loc)) - set(names)
        try:
            unknown = sorted(extra)
        except TypeError:  # keys of several types (YAML `1:` beside `a:`)
            unknown = sorted(extra, key=repr)
        return loc, f"unknown key(s) {unknown}; valid: {names}"
    if kind in _LIST_SHAPE:
        whole = loc[:-1] if kind == "missing" else loc
        tp = _type_at(cls, whole)
        if typing.get_origin(tp) is tuple:
            return whole, f"expected a list of {len(typing.get_args(tp))} values, got {_value_at(raw, whole)!r}"
        if kind == "missing":  # a required key of a spec (the loader always gives them)
            return loc, "missing; it is required"
    says = _SAYS.get(kind, error["msg"])
    return loc, f"{says}, got {_value_at(raw, loc)!r}"


def _type_at(cls: type, loc: tuple) -> Any:
    """The field type at `loc` inside the dataclass `cls` (`X | None` read as X)."""
    tp = cls
    for part in loc:
        tp = typing.get_type_hints(tp)[part] if dataclasses.is_dataclass(tp) else typing.get_args(tp)[part]
        args = typing.get_args(tp)
        if type(None) in args and len(args) == 2:
            tp = next(a for a in args if a is not type(None))
    return tp


def _value_at(raw: Any, loc: tuple) -> Any:
    for part in loc:
        raw = raw[part]
    return raw


def _reading_order(raw: Any, loc: tuple) -> list:
    """Where the problem at `loc` comes when the file is read top-down: a mapping's or list's own
    problem (unknown keys, wrong length) before its items', items in the order written."""
    order = []
    for part in loc:
        order.append((1, list(raw).index(part) if isinstance(raw, dict) else part))
        raw = raw[part]
    return order + [(0, 0)]
