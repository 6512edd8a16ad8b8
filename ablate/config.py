"""Search-space YAML -> frozen, validated trial specs (the dataclasses of ablate.specs).

A search space file has `name`, `description`, a `base` config (data, model,
train, losses), named `combinations` (each a partial override deep-merged into
base; a loss set to `null` removes that term) and `seeds`. The grid is
combinations x seeds. Optional: `questions` (the report's declared metrics) and `tune`
(tuned arms: the searched weights of each combination, read in config_tune.py). Every error
names the file and the key path.

This loader sits at the top: it may import models, losses and the report's declared
questions to check a grid, and only the pipeline and the command line import it; every
stage below receives the parsed specs by value. Pydantic reads each spec (spec_reader.py);
`ablate schema` prints the file's JSON Schema (SearchSpaceFile below).
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from ablate.config_tune import TuneBlock, parse_tune
from ablate.losses.spec import COMMON_OPTIONS, split_options
from ablate.spec_reader import read_spec
from ablate.specs import (
    PLAIN_NAME,
    PRECISIONS,
    SEED_MAX,
    ConfigError,
    DataSpec,
    Grid,
    LossSpec,
    ModelSpec,
    PriorSpec,
    TrainSpec,
    TrialSpec,
)
from ablate.yaml_load import YamlRefused, load_yaml

# ---- the shape of a search-space file: `ablate schema` prints it as JSON Schema, so editors
# complete and check search_spaces/*.yaml; load_grid reads the same keys (and says more).

# One term under `losses:`: the options every term takes (LossSpec's fields, described by
# COMMON_OPTIONS) and the term's own options (`ablate losses` lists them).
# (The fields as dict[str, Any]: mypy otherwise matches their tuples against create_model's
# `__config__`, `__doc__`, ... parameters too, which a ** could also fill.)
LossTermBlock = create_model(
    "LossTermBlock", __config__=ConfigDict(extra="allow", title="loss term (its own options besides these: "
                                                                 "`ablate losses`)"),
    **typing.cast(dict[str, Any], {name: (typing.get_type_hints(LossSpec, include_extras=True)[name],
                                          Field(getattr(LossSpec, name), description=says))
                                   for name, says in COMMON_OPTIONS.items()}))


class ModelBlock(BaseModel):
    """`model:` a preset, any of its architecture fields (e.g. ch, ch_mult), an edge channel."""
    model_config = ConfigDict(extra="allow")
    preset: str = Field(ModelSpec.preset, description="an architecture preset (ablate/models/presets.py)")
    edge_channel: dict | None = Field(None, description="{family, channel, filter options}: an edge map the "
                                      "autoencoder reconstructs as a 4th channel; null = RGB only")


class TrialBlock(BaseModel):
    """`base:` or one combination's overrides (deep-merged into base)."""
    model_config = ConfigDict(extra="forbid")
    data: DataSpec | None = None
    model: ModelBlock | None = None
    train: TrainSpec | None = None
    # LossTermBlock is built at run time (create_model), which no type checker follows: hence the ignore.
    losses: dict[str, LossTermBlock | None] | None = Field(None, description="term name -> its options; null "  # type: ignore[valid-type]
                                                             "removes a term of base")
    prior: PriorSpec | None = Field(None, description="a transformer prior over the trial's codes, trained and "
                                    "sampled after the autoencoder ({} = the authors' settings); null in a "
                                    "combination removes base's")


class QuestionBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")
    primary: list[str] = Field(min_length=1, max_length=2, description="the 1 or 2 metrics that vote")


class NonInferiorityBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: str = Field(description="a fidelity metric no arm trains on, e.g. psnr")
    margin: float = Field(gt=0, description="in the metric's units: an arm counts as not worse when the "
                          "baseline beats it by less than this (0.5 with psnr: 0.5 dB)")


class QuestionsBlock(BaseModel):
    """`questions:` the report's primary metrics, declared before the run (ablate/report/declared.py)."""
    model_config = ConfigDict(extra="forbid")
    q1: QuestionBlock | None = None
    q2: QuestionBlock | None = None
    ranking: list[str] | None = Field(None, min_length=1)
    non_inferiority: NonInferiorityBlock | None = None
    q1s: QuestionBlock | None = Field(None, description="Q1 asked of the prior's samples (eval/samples.parquet "
                                      "metrics, e.g. fid, recall, morph_w1.density); no default: undeclared, no verdict")
    q2s: QuestionBlock | None = Field(None, description="Q2 asked of the prior's samples, as q1s")


class SearchSpaceFile(BaseModel):
    """A search space: `base` deep-merged with each of `combinations`, each run once per seed."""
    model_config = ConfigDict(extra="forbid", title="ablate search space")
    name: Annotated[str, Field(pattern=f"^{PLAIN_NAME.pattern}$")] | int | None = Field(
        None, description="the experiment folder runs/<name> (default: the file's name)")
    description: str = ""
    base: TrialBlock | None = None
    combinations: dict[str, TrialBlock | None] = Field(min_length=1, description="name (letters, digits, '-', "
                                                       "'_') -> overrides of base")
    seeds: list[Annotated[int, Field(ge=0, le=SEED_MAX)]] = Field([0], min_length=1,
                                                                json_schema_extra={"uniqueItems": True})
    questions: QuestionsBlock | None = None
    tune: TuneBlock | None = None


def search_space_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a search-space file, for `ablate schema`."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **SearchSpaceFile.model_json_schema()}


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _loss_specs(raw: Any, where: str) -> tuple[LossSpec, ...]:
    from ablate.losses import (
        LOSSES,  # late: keeps config importable without torch at module load
    )

    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: expected a non-empty mapping of loss terms")
    specs = []
    for name, body in raw.items():
        if body is None:  # removed by a combination
            continue
        key = f"{where}.{name}"
        if name not in LOSSES:
            raise ConfigError(f"{key}: {LOSSES.unknown(name)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{key}: expected a mapping like {{weight: 1.0}}, got {body!r}")
        common, options = split_options(body)
        try:
            LOSSES.check_options(name, options, key, also_valid=COMMON_OPTIONS)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        spec = read_spec(LossSpec, {"name": name, **common, "options": options}, key)
        if spec.weight < 0:
            raise ConfigError(f"{key}.weight: must be >= 0, got {spec.weight}")
        if spec.start_step < 0:
            raise ConfigError(f"{key}.start_step: must be >= 0, got {spec.start_step}")
        specs.append(spec)
    if not specs:
        raise ConfigError(f"{where}: every loss term was removed; at least one is needed")
    return tuple(specs)


def trial_from_dict(combination: str, seed: int, cfg: dict, where: str) -> TrialSpec:
    unknown = sorted(set(cfg) - set(TrialBlock.model_fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid: {sorted(TrialBlock.model_fields)}")
    model_raw = cfg.get("model")
    if model_raw is not None and not isinstance(model_raw, dict):
        raise ConfigError(f"{where}.model: expected a mapping like {{preset: paper256}}, got {model_raw!r}")
    model_raw = dict(model_raw or {})
    preset = model_raw.pop("preset", "paper256")
    edge_channel = model_raw.pop("edge_channel", None)
    from ablate.models.edge_channel import parse_edge_channel
    from ablate.models.presets import FieldError, check_overrides

    if not isinstance(preset, str):
        raise ConfigError(f"{where}.model.preset: expected a preset name, got {preset!r}")
    if "in_channels" in model_raw:
        raise ConfigError(f"{where}.model.in_channels: set by the data (3, or 4 with edge_channel), not by hand")
    try:
        arch = check_overrides(preset, model_raw)
        if edge_channel is not None:
            parse_edge_channel(edge_channel)
    except FieldError as e:  # the message starts with the field's name
        raise ConfigError(f"{where}.model.{e.args[0]}") from None
    except (KeyError, ValueError) as e:
        raise ConfigError(f"{where}.model: {e.args[0]}") from None
    spec = TrialSpec(
        combination=combination,
        seed=seed,
        data=read_spec(DataSpec, cfg.get("data"), f"{where}.data"),
        model=ModelSpec(preset=preset, overrides=model_raw, edge_channel=edge_channel),
        train=read_spec(TrainSpec, cfg.get("train"), f"{where}.train"),
        losses=_loss_specs(cfg.get("losses"), f"{where}.losses"),
        prior=_prior_spec(cfg.get("prior"), f"{where}.prior", arch) if cfg.get("prior") is not None else None,
    )
    t = spec.train
    for k in ("steps", "batch_size", "log_every", "image_every", "val_every", "val_batches", "checkpoint_every"):
        if getattr(t, k) <= 0:
            raise ConfigError(f"{where}.train.{k}: must be > 0, got {getattr(t, k)}")
    if t.epochs is not None and t.epochs <= 0:
        raise ConfigError(f"{where}.train.epochs: must be > 0, got {t.epochs}")
    if t.precision not in PRECISIONS:
        raise ConfigError(f"{where}.train.precision: must be one of {', '.join(PRECISIONS)}, got {t.precision!r}")
    if t.lr <= 0:
        raise ConfigError(f"{where}.train.lr: must be > 0, got {t.lr}")
    if spec.data.size < 16 or spec.data.size % 8:
        raise ConfigError(f"{where}.data.size: must be a multiple of 8 and >= 16, got {spec.data.size}")
    if spec.data.size % arch.downsampling():  # the encoder halves the image once per level but the last
        raise ConfigError(f"{where}.data.size: {spec.data.size} px is not divisible by the model's downsampling "
                          f"{arch.downsampling()} (2^(levels-1), model.ch_mult {list(arch.ch_mult)}); pick a size "
                          "that is, or fewer levels")
    if not spec.data.cache_mb >= 0:
        raise ConfigError(f"{where}.data.cache_mb: must be >= 0 (0 = no cache), got {spec.data.cache_mb}")
    _check_edge_map_term(spec, where)
    return spec


def _prior_spec(raw: Any, where: str, arch) -> PriorSpec:
    """`prior:` read and checked (every setting > 0 where it must be, heads dividing width); a
    model without a codebook has no codes to model."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of prior settings ({{}} for the defaults), got {raw!r}")
    spec = read_spec(PriorSpec, raw, where)
    for k in ("steps", "batch_size", "samples", "log_every", "checkpoint_every"):
        if getattr(spec, k) <= 0:
            raise ConfigError(f"{where}.{k}: must be > 0, got {getattr(spec, k)}")
    from ablate.errors import InvalidInput
    from ablate.models.code_prior import CodePriorConfig

    try:  # the network's own checks (layers, heads dividing width, dropout, pkeep); messages start with the key
        CodePriorConfig(vocab=arch.n_embed, layers=spec.layers, heads=spec.heads, width=spec.width,
                        dropout=spec.dropout, pkeep=spec.pkeep)
    except InvalidInput as e:
        raise ConfigError(f"{where}.{e}") from None
    if spec.lr <= 0 or spec.temperature <= 0:
        bad = "lr" if spec.lr <= 0 else "temperature"
        raise ConfigError(f"{where}.{bad}: must be > 0, got {getattr(spec, bad)}")
    if spec.top_k is not None and not 1 <= spec.top_k <= arch.n_embed:
        raise ConfigError(f"{where}.top_k: must be in [1, {arch.n_embed}] (the codebook size) or null, got {spec.top_k}")
    if spec.condition is not None and not spec.condition.strip():
        raise ConfigError(f"{where}.condition: expected the name of a label column of the dataset (an --index "
                          "file's column, `prepare --index`), or null for an unconditional prior; got an empty name")
    if spec.seed is not None and not 0 <= spec.seed <= SEED_MAX:
        raise ConfigError(f"{where}.seed: must be in [0, {SEED_MAX}] or null (the trial's seed), got {spec.seed}")
    if arch.bottleneck != "vq":
        raise ConfigError(f"{where}: model.bottleneck is {arch.bottleneck!r}: an autoencoder without a codebook "
                          "has no codes for a prior; use a VQ preset or drop `prior:`")
    return spec


def _check_edge_map_term(spec: TrialSpec, where: str) -> None:
    """An edge channel is reconstructed by its own term, and that term needs the channel:
    RGB keeps its weight in every arm, and the map's weight is a declared number."""
    has_term = any(ls.name == "edge_map_l1" and ls.weight > 0 for ls in spec.losses)
    if spec.model.edge_channel is not None and not has_term:
        raise ConfigError(f"{where}.losses: model.edge_channel adds a 4th channel that no term scores; add "
                          "edge_map_l1: {weight: W} (0.333 gives the map the share of one RGB channel, as the "
                          "paper's 4-channel L1 mean does)")
    if has_term and spec.model.edge_channel is None:
        raise ConfigError(f"{where}.losses.edge_map_l1: scores the edge map of model.edge_channel, which this "
                          "trial does not have; add model.edge_channel or leave edge_map_l1 out")


def load_grid(path: str | Path, overrides: dict | None = None) -> Grid:
    """Read a search space; `overrides` (e.g. {"train": {"steps": 20}}) is merged into every trial."""
    path = Path(path)
    try:
        raw = load_yaml(path)  # size, aliases and duplicate keys checked there
    except FileNotFoundError:
        raise ConfigError(f"{path}: search space file not found") from None
    except YamlRefused as e:
        raise ConfigError(str(e)) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(raw) - set(SearchSpaceFile.model_fields))
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {unknown}")
    combos = raw.get("combinations")
    if not isinstance(combos, dict) or not combos:
        raise ConfigError(f"{path}: combinations: expected a non-empty mapping name -> overrides")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"{path}: seeds: expected a non-empty list of integers, got {seeds!r}")
    for i, seed in enumerate(seeds):
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
            raise ConfigError(f"{path}: seeds[{i}]: {seed!r} is not a seed; seeds are integers from 0 to "
                              f"{SEED_MAX} (2^32-1)")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{path}: seeds: duplicates in {seeds}")
    base = raw.get("base") or {}
    if not isinstance(base, dict):
        raise ConfigError(f"{path}: base: expected a mapping")
    name = grid_name(raw, path)
    trials = []
    for cname, override in combos.items():
        if not isinstance(cname, str) or not cname.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"{path}: combinations.{cname}: names must be letters, digits, '-' or '_'")
        if override is not None and not isinstance(override, dict):
            raise ConfigError(f"{path}: combinations.{cname}: expected a mapping of overrides")
        merged = deep_merge(base, override or {})
        merged = deep_merge(merged, overrides or {})
        for seed in seeds:
            trials.append(trial_from_dict(cname, seed, merged, f"{path}: combinations.{cname}"))
    questions = None
    if "questions" in raw:  # pre-declared primary metrics of the report's two questions
        from ablate.report.declared import check_non_inferiority, check_q1_primary, parse_questions

        try:
            questions = parse_questions(raw["questions"], f"{path}: questions")
            check_q1_primary(questions, trials, f"{path}: questions.q1.primary")
            check_non_inferiority(questions, trials, f"{path}: questions.non_inferiority.metric")
        except ValueError as e:  # the messages name the file and key
            raise ConfigError(str(e)) from None
    tune = parse_tune(raw["tune"], tuple(trials), seeds, f"{path}: tune") if "tune" in raw else None
    return Grid(name=name, description=str(raw.get("description", "")),
                source=str(path), trials=tuple(trials), questions=questions, tune=tune)


def resolve_grid(grid: str, steps: int | None = None, epochs: int | None = None, size: int | None = None,
                 only: tuple[str, ...] = (), precision: str | None = None,
                 compile: bool | None = None) -> tuple[Grid, Grid]:
    """(the whole search space, the trials to run now), read here at the top so the training
    stage receives the parsed Grid by value and never reads YAML itself.

    Args:
        grid: a search space's name (`find_grid`) or a path to its .yaml file.
        steps, epochs, size, precision, compile: the launch's overrides of every trial's
            train.steps, train.epochs, data.size, train.precision, train.compile (None: as written).
        only: keep these combinations (names as in the search space); () keeps all.
    """
    overrides: dict = {}
    if steps is not None:
        overrides.setdefault("train", {})["steps"] = steps
    if epochs is not None:
        overrides.setdefault("train", {})["epochs"] = epochs
    if size is not None:
        overrides.setdefault("data", {})["size"] = size
    if precision is not None:
        overrides.setdefault("train", {})["precision"] = precision
    if compile is not None:
        overrides.setdefault("train", {})["compile"] = compile
    full = load_grid(find_grid(grid), overrides)
    if not only:
        return full, full
    names = list(dict.fromkeys(s.combination for s in full.trials))
    unknown = [c for c in only if c not in names]
    if unknown:
        raise ConfigError(f"--only {','.join(only)}: no combination {unknown} in grid {full.name!r}; "
                          f"its combinations: {', '.join(names)}")
    return full, dataclasses.replace(full, trials=tuple(s for s in full.trials if s.combination in only))


def shipped_grids() -> dict[str, Path]:
    """The search spaces installed with the package (`ablate/search_spaces/*.yaml`), by name.

    Read through importlib.resources, not the source tree, so `pip install ablate` (a
    wheel, no checkout) runs `--grid smoke` as a checkout does."""
    from importlib import resources

    folder = resources.files("ablate.search_spaces")
    return {Path(f.name).stem: Path(str(f)) for f in folder.iterdir() if f.name.endswith(".yaml")}


def grid_name(raw: dict, path: Path) -> str:
    """`name:` (or the file's stem): the experiment folder under runs/ when --out is not given, so a
    plain name, never a path (`../..` or `/abs` would send the launch outside runs/)."""
    if "name" not in raw:
        if path.stem in (".", ".."):
            raise ConfigError(f"{path}: name: the file's name gives no experiment name; add `name: my_grid`")
        return path.stem
    name = raw["name"]
    if isinstance(name, int) and not isinstance(name, bool):  # `name: 2024` reads as an integer
        name = str(name)
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name) or name in (".", ".."):
        raise ConfigError(f"{path}: name: {name!r} is not a plain name (letters, digits, '-', '_', '.'; no '/', "
                          "not '.' or '..'): it names the folder runs/<name>; give the folder with --out instead")
    return name


def find_grid(name: str) -> Path:
    """A path to a YAML file, or a preset name: `./search_spaces/NAME.yaml` first (your own
    presets in the folder you launch from), then the ones installed with ablate."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise ConfigError(f"{p}: search space file not found")
        return p
    local = Path.cwd() / "search_spaces"
    cand = local / f"{name}.yaml"
    if cand.exists():
        return cand
    shipped = shipped_grids()
    if name in shipped:
        return shipped[name]
    known = sorted(set(shipped) | ({f.stem for f in local.glob("*.yaml")} if local.is_dir() else set()))
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown grid {name!r}.{hint} Known: {', '.join(known)} (or give a path to a .yaml file)")
