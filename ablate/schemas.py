"""The shapes of the JSON files ablate writes and reads back, as pydantic models: an
experiment's grid.json (GridRecord) and eval/notes.json (Notes) here, a dataset's
manifest.json (ablate.data.dataset.Manifest) beside the rest of a prepared dataset's
definition. Each model is the one definition its writer builds and dumps and its readers
validate into.

Valid JSON of the wrong shape (a list, a missing key, a number where a list belongs) must
give one line naming the file and the key path, e.g. `manifest.json: shards[2].sha256
missing`, not a KeyError deep inside a trial: `problem(value, Model)` is that line's tail
(the first mismatch), or None. The rules every model here keeps (ShapeModel):
- other keys are allowed and kept (a newer writer may add some);
- strict types: nothing is coerced, and JSON true/false is never a number (`_is`);
- a value of a narrower kind than its JSON type (a count, a sha256) is a `described` type,
  whose message says what was expected in words ("an integer >= 0").
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, WrapValidator
from pydantic_core import PydanticCustomError

# pydantic error types of our own: a leaf's "is <found>, expected <what>" after the key path,
# and a whole line (a model's own rule across keys, e.g. counts against shards).
_LEAF = "ablate_leaf"
_LINE = "ablate_line"

_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "an object",
          list: "a list", type(None): "null"}
# What pydantic's own type errors expected, in the same words.
_EXPECTED = {"string_type": "a string", "int_type": "an integer", "float_type": "a number",
             "bool_type": "true or false", "dict_type": "an object", "model_type": "an object",
             "list_type": "a list"}


class ShapeModel(BaseModel):
    """A JSON object of a file ablate reads back: strict types, other keys allowed and kept."""
    model_config = ConfigDict(strict=True, extra="allow")


def _is(value, t) -> bool:
    # JSON true/false are Python bools, which are ints too: never accept them as numbers.
    if isinstance(value, bool) and t in (int, float):
        return False
    if t is float:
        return isinstance(value, (int, float))
    return isinstance(value, t)


def _json_type(value) -> str:
    for t in (bool, int, float, str, dict, list, type(None)):
        if isinstance(value, t):
            return _NAMES[t]
    return type(value).__name__


def described(base: Any, what: str, *constraints: Any, kind: type | None = None) -> Any:
    """A strict `base` value that also meets pydantic `constraints` (Field(ge=0), an
    AfterValidator, ...), whose every mismatch reads '<path> is <found>, expected <what>'.

    Args:
        base: the Python type of the value (a Literal or a union too).
        what: the expected value in words, e.g. "an integer >= 0".
        constraints: pydantic metadata checked after the type.
        kind: the JSON type the value has (default `base`): a value of another type is named
            by its type ("is a string"), one of this type by itself ("is -1"). None for a
            union: always by its type.
    """
    kind = base if kind is None and isinstance(base, type) else kind

    def check(value, handler):
        try:
            return handler(value)
        except ValidationError:
            found = repr(value) if kind is not None and _is(value, kind) else _json_type(value)
            raise PydanticCustomError(_LEAF, "is {found}, expected {what}", {"found": found, "what": what}) from None

    strict = (Strict(),) if isinstance(base, type) else ()  # a union is strict by the model's config
    # The tuple is built apart: mypy reads `Annotated[(a, *b)]` as Python 3.11's `Annotated[a, *b]`.
    params = (base, *strict, *constraints, WrapValidator(check))
    return Annotated[params]


def whole_line(text: str) -> PydanticCustomError:
    """The error a model's own check raises for a rule across keys: `text` is the whole line,
    key path included (e.g. "counts.test is 20 but its shards hold 0 rows")."""
    return PydanticCustomError(_LINE, "{text}", {"text": text})


def _path(loc: tuple) -> str:
    out = ""
    for k in loc:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out


def first_problem(error: ValidationError) -> str:
    """The first mismatch of a failed validation as one line: 'path what' (e.g. 'shards[2].sha256
    missing', 'counts is a list, expected an object', 'top level is null, expected an object')."""
    e = error.errors(include_url=False)[0]
    path = _path(e["loc"])
    where = path or "top level"
    if e["type"] == _LINE:
        return e["msg"]
    if e["type"] == _LEAF:
        return f"{where} {e['msg']}"
    if e["type"] == "missing":
        return f"{path} missing"
    if e["type"] in _EXPECTED:
        return f"{where} is {_json_type(e['input'])}, expected {_EXPECTED[e['type']]}"
    return f"{where}: {e['msg']}"  # a pydantic rule with no words of ours: pydantic's own


def problem(value, model: type[BaseModel]) -> str | None:
    """The first place where `value` (parsed JSON) does not have `model`'s shape, as 'path
    what' (first_problem), or None when it has."""
    try:
        model.model_validate(value)
    except ValidationError as e:
        return first_problem(e)
    return None


# ---------------------------------------------------------------- values narrower than their JSON type

if TYPE_CHECKING:  # a type checker cannot evaluate described(): to it each is its Python type
    Count = int
    Positive = int
    Sha256 = str
    Questions = dict | list | None
    Mode = str
else:
    Count = described(int, "an integer >= 0", Field(ge=0))
    Positive = described(int, "an integer >= 1", Field(ge=1))
    Sha256 = described(str, "64 lowercase hex digits (a sha256)", Field(pattern=r"^[0-9a-f]{64}$"))
    Questions = described(dict | list | None, "an object or a list or null")  # report/declared.py's shape
    Mode = described(Literal["max", "min"], '"max" or "min"', kind=str)  # an objective's better direction


# ---------------------------------------------------------------- the files

class GridRecord(ShapeModel):
    """grid.json: the fingerprint of the grid (name, data, trials: what two launches of one
    experiment share), the trials launched into the folder so far, the questions'
    pre-declared primary metrics and the dataset's identity (its manifest's sha256). The
    required fields first, in the order a reader checks them."""
    name: str
    trials: dict[str, dict]  # trial name -> its flat config
    data: str | None = None  # the dataset's path or URI as the launch named it
    # Absent in records from before `--only`: every trial of `trials` was launched.
    launched: list[str] = Field(default_factory=list)
    questions: Questions = None
    manifest_sha256: Sha256 | None = None  # None: written before ablate kept it
    # A tuned grid's `tune:` block (ablate.specs.TuneSpec.record): `trials` are then the arms as
    # written, and stage 2 retrains each at its chosen point (search/chosen.json).
    tune: dict | None = None

    def to_json(self) -> str:
        """grid.json's text: the keys that were set (an older record re-written gains no default)."""
        return json.dumps(self.model_dump(mode="json", exclude_unset=True), indent=1) + "\n"


class ChosenPoint(ShapeModel):
    """One searched combination's outcome in search/chosen.json."""
    point: dict[str, Any]  # searched key -> the chosen value
    trial: str  # the stage-1 trial that scored best
    objective: float  # its last objective value (at `steps`)
    steps: Count


class TuningRecord(ShapeModel):
    """search/chosen.json: the tune block stage 1 ran (TuneSpec.record) and, per combination
    whose search has ended, the point stage 2 retrains. Written (atomically) after each
    combination's search, so a resumed launch skips the searches already decided."""
    tune: dict
    chosen: dict[str, ChosenPoint] = Field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=1) + "\n"


class TuneRecord(ShapeModel):
    """The `tune` of grid.json and of search/chosen.json: ablate.specs.TuneSpec.record(), as the
    report reads it back (ablate.report.tuning)."""
    objective: str
    mode: Mode
    budget: Positive  # stage-1 trials per combination, the as-written point included
    algorithm: str
    scheduler: str
    search_seed: int
    grace_steps: Count
    space: dict[str, dict[str, dict[str, list]]]  # combination -> searched key -> {kind: [args]}


class JudgeReliability(ShapeModel):
    """One entry of eval/notes.json's `judge`: the vessel judge measured on the originals of the
    evaluated split at one image size (ablate.evaluate.judge_reliability). A score that was not
    measured is absent (None): the agreement for a ridge judge (`ridge_agreement_skipped` says
    why), the mask scores without manual masks (`masks` 0), the AUC where masks have one class."""
    segmenter: str
    image_size: Positive
    images: Count  # originals the agreement is a mean over
    masks: Count = 0  # of them, with a manual vessel mask
    ridge_agreement: float | None = None  # mean per-image Dice between the judge's and the ridge map
    ridge_agreement_min: float | None = None
    ridge_agreement_skipped: str = ""
    dice: float | None = None  # pooled inside the FOV against the manual masks, as `ablate segmenter evaluate`
    auc: float | None = None
    dice_mean_per_image: float | None = None
    ridge_dice: float | None = None  # the ridge filter's pooled Dice against the same masks


class Notes(ShapeModel):
    """eval/notes.json, of the grid's own dataset and of each other dataset
    (eval/datasets/<name>/: also data, splits, images, manifest_sha256). Every key is
    optional to a reader (a report without them says so); the writer sets what it knows, and
    only that is written (the defaults are what an attribute reads for a key the file lacks).
    The fields in the order a reader checks them."""
    segmenter: str = ""  # the vessel segmenter's name as the report shows it
    morphology: str = ""  # the vessel-feature definition set
    skipped: list[str] = Field(default_factory=list)  # metrics not computed, checkpoint fallbacks: one sentence each
    cautions: list[str] = Field(default_factory=list)
    feature_nets: dict = Field(default_factory=dict)
    test_images: Count = 0  # own dataset
    images: Count = 0  # other dataset
    data: str = ""
    splits: list[str] = Field(default_factory=list)
    resampled: list[str] = Field(default_factory=list)
    manifest_sha256: str = ""
    judge: list[JudgeReliability] = Field(default_factory=list)  # per image size; absent before issue 31

    def to_json(self) -> str:
        """notes.json's text: the keys the writer set, and the other keys it passed."""
        return json.dumps(self.model_dump(mode="json", exclude_unset=True), indent=1) + "\n"

