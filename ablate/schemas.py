"""The shapes of the JSON files ablate reads back: a dataset's manifest.json, an
experiment's grid.json and eval/notes.json. Valid JSON of the wrong shape (a list, a
missing key, a number where a list belongs) must give one line naming the file and the
key path, e.g. `manifest.json: shards[2].sha256 missing`, not a KeyError deep inside a
trial. Hand-written, no dependency: a schema is a Python type (or tuple of types), or one
of the small classes below; `problem(value, schema)` returns the first mismatch or None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Obj:
    """A JSON object with these required keys (and these optional ones); other keys are allowed
    (a newer writer may add some)."""
    required: dict
    optional: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ListOf:
    item: object


@dataclass(frozen=True)
class DictOf:
    """An object whose keys are free (e.g. trial names) and whose values all have one shape."""
    value: object


@dataclass(frozen=True)
class Check:
    """A value of `base` shape that also passes `ok` (described as `what` in the message)."""
    base: object
    ok: object  # callable: value -> bool
    what: str


_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "an object",
          list: "a list", type(None): "null"}


def _describe(schema) -> str:
    if isinstance(schema, tuple):
        return " or ".join(_describe(s) for s in schema)
    if isinstance(schema, Obj):
        return "an object"
    if isinstance(schema, ListOf):
        return "a list"
    if isinstance(schema, DictOf):
        return "an object"
    if isinstance(schema, Check):
        return schema.what
    return _NAMES.get(schema, getattr(schema, "__name__", str(schema)))


def _is(value, t) -> bool:
    # JSON true/false are Python bools, which are ints too: never accept them as numbers.
    if isinstance(value, bool) and t in (int, float):
        return False
    if t is float:
        return isinstance(value, (int, float))
    return isinstance(value, t)


def _key(path: str, k) -> str:
    return f"{path}.{k}" if path else str(k)


def problem(value, schema, path: str = "") -> str | None:
    """The first place where `value` does not have `schema`'s shape, as 'path what', or None."""
    where = path or "top level"
    if isinstance(schema, tuple):  # any of these shapes
        if any(problem(value, s, path) is None for s in schema):
            return None
        if len(schema) == 2 and type(None) in schema:  # nullable: the non-null shape's own message
            return problem(value, schema[0] if schema[1] is type(None) else schema[1], path)
        return f"{where} is {_json_type(value)}, expected {_describe(schema)}"
    if isinstance(schema, Check):
        found = problem(value, schema.base, path)
        if found:  # of another type altogether: say what was wanted in full
            return f"{where} is {_json_type(value)}, expected {schema.what}" if isinstance(schema.base, type) else found
        return None if schema.ok(value) else f"{where} is {value!r}, expected {schema.what}"
    if isinstance(schema, Obj):
        if not isinstance(value, dict):
            return f"{where} is {_json_type(value)}, expected an object"
        for k, s in schema.required.items():
            if k not in value:
                return f"{_key(path, k)} missing"
            found = problem(value[k], s, _key(path, k))
            if found:
                return found
        for k, s in schema.optional.items():
            if k in value:
                found = problem(value[k], s, _key(path, k))
                if found:
                    return found
        return None
    if isinstance(schema, ListOf):
        if not isinstance(value, list):
            return f"{where} is {_json_type(value)}, expected a list"
        for i, item in enumerate(value):
            found = problem(item, schema.item, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(schema, DictOf):
        if not isinstance(value, dict):
            return f"{where} is {_json_type(value)}, expected an object"
        for k, v in value.items():
            found = problem(v, schema.value, _key(path, k))
            if found:
                return found
        return None
    return None if _is(value, schema) else f"{where} is {_json_type(value)}, expected {_describe(schema)}"


def _json_type(value) -> str:
    for t in (bool, int, float, str, dict, list, type(None)):
        if isinstance(value, t):
            return _NAMES[t]
    return type(value).__name__


# ---------------------------------------------------------------- the files

COUNT = Check(int, lambda v: v >= 0, "an integer >= 0")
POSITIVE = Check(int, lambda v: v >= 1, "an integer >= 1")
SHA256 = Check(str, lambda v: re.fullmatch(r"[0-9a-f]{64}", v) is not None, "64 lowercase hex digits (a sha256)")
# A shard's file is a plain name inside the dataset folder: never a path out of it.
SHARD_FILE = Check(str, lambda v: re.fullmatch(r"[A-Za-z0-9_.-]+\.parquet", v) is not None and ".." not in v,
                   "a .parquet file name inside the dataset folder (no '/' or '..')")
SPLIT = Check(str, lambda v: v in ("train", "val", "test"), "one of 'train', 'val', 'test'")

MANIFEST = Obj(
    {"format_version": int, "image_size": POSITIVE, "counts": DictOf(COUNT),
     "shards": ListOf(Obj({"file": SHARD_FILE, "split": SPLIT, "rows": COUNT, "sha256": SHA256}))},
    {"source": str, "rejected": COUNT, "preprocessing": dict},
)

GRID_RECORD = Obj(
    {"name": str, "trials": DictOf(dict)},
    {"data": (str, type(None)), "launched": ListOf(str), "questions": (dict, list, type(None)),
     "manifest_sha256": (SHA256, type(None))},
)

# eval/notes.json, of the grid's own dataset and of each other dataset (eval/datasets/<name>/).
NOTES = Obj(
    {},
    {"segmenter": str, "morphology": str, "skipped": ListOf(str), "cautions": ListOf(str), "feature_nets": dict,
     "test_images": COUNT,
     "images": COUNT, "data": str, "splits": ListOf(str), "resampled": ListOf(str), "manifest_sha256": str},
)
