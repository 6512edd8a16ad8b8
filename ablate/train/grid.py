"""The grid before it runs: a search space resolved into trials (with the launch's
overrides and the `auto` foundation model decided), checked against the dataset and
the loss terms' preflight hooks, and shown as a table."""

from __future__ import annotations

import dataclasses

from ablate.config import Grid, find_grid, load_grid
from ablate.data.shards import DatasetError, read_manifest, shard_paths
from ablate.train.driver import trial_key


def resolve_grid(grid: str, steps: int | None = None, epochs: int | None = None, size: int | None = None) -> Grid:
    """The search space `grid` (a name or a path) with the launch's overrides, `auto` resolved."""
    overrides: dict = {}
    if steps is not None:
        overrides.setdefault("train", {})["steps"] = steps
    if epochs is not None:
        overrides.setdefault("train", {})["epochs"] = epochs
    if size is not None:
        overrides.setdefault("data", {})["size"] = size
    return resolve_auto_foundation(load_grid(find_grid(grid), overrides))


def resolve_auto_foundation(grid: Grid) -> Grid:
    """`foundation: {model: auto}` -> RETFound where its weights file is present, else our
    fundus MAE. Decided once, before any trial, and appended to the combination name
    (`retfound-fundus_mae`), so results and logs say which model stood in."""
    from ablate.backbones import WeightsMissing
    from ablate.backbones.retfound import retfound_weights_path

    trials = []
    for spec in grid.trials:
        losses, suffix = [], ""
        for ls in spec.losses:
            if ls.name == "foundation" and ls.options.get("model") == "auto":
                try:
                    retfound_weights_path("retfound", ls.options.get("weights"))
                    chosen = "retfound"
                except WeightsMissing:
                    chosen = "fundus_mae"
                suffix = f"-{chosen}"
                ls = dataclasses.replace(ls, options={**ls.options, "model": chosen})
            losses.append(ls)
        trials.append(dataclasses.replace(spec, losses=tuple(losses), combination=spec.combination + suffix))
    return dataclasses.replace(grid, trials=tuple(trials))


def check_data(data_dir: str, grid: Grid) -> dict:
    manifest = read_manifest(data_dir)
    for split in ("train", "val"):
        if manifest["counts"].get(split, 0) == 0:
            raise DatasetError(f"{data_dir}: the {split} split is empty (counts {manifest['counts']})")
        shard_paths(data_dir, split, verify=True)  # checksums once here; trials then skip it
    for spec in grid.trials:
        if spec.data.size > manifest["image_size"]:
            raise DatasetError(
                f"{data_dir}: prepared at {manifest['image_size']} px but trial {trial_key(spec)} asks for "
                f"{spec.data.size} px; re-run `ablate prepare SRC --out {data_dir} --size {spec.data.size}`"
            )
    return manifest


def preflight_losses(grid: Grid) -> None:
    """Fail before Ray starts if a term's weights are missing or its options are wrong."""
    from ablate.losses import LOSSES

    seen = set()
    for spec in grid.trials:
        for ls in spec.losses:
            key = (ls.name, repr(sorted(ls.options.items())))
            if key in seen:
                continue
            seen.add(key)
            entry = LOSSES.get(ls.name)
            if entry.preflight is not None:
                entry.preflight(**ls.options)


def trial_table(grid: Grid) -> str:
    lines = [f"{'trial':<28} {'combination':<20} {'seed':>4}  {'input':<16} losses"]
    for spec in grid.trials:
        terms = ", ".join(f"{l.name}x{l.weight:g}" + ("(adaptive)" if l.adaptive else "") +
                          (f"@{l.start_step}" if l.start_step else "") for l in spec.losses)
        ec = spec.model.edge_channel
        inputs = "rgb" if ec is None else f"rgb+{ec.get('family', 'meijering')}"
        lines.append(f"{trial_key(spec):<28} {spec.combination:<20} {spec.seed:>4}  {inputs:<16} {terms}")
    return "\n".join(lines)
