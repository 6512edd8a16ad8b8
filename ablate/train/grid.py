"""The grid before it runs: its trials (read from the search space, with the launch's
overrides and `--only`, by `ablate.config.resolve_grid` above this layer) checked against
the dataset and the loss terms' preflight hooks, and shown as a table. Pretrained files:
`train/pretrained.py`."""

from __future__ import annotations

from pathlib import Path

from ablate.data.shards import DatasetError, read_manifest, shard_paths
from ablate.specs import ConfigError, Grid
from ablate.train.driver import trial_key


def check_batches(grid: Grid, workers: int) -> None:
    """Every trial's global batch splits evenly over the workers: each worker of each trial
    refuses it otherwise (runtime.distributed.worker_context), after Ray started it."""
    for spec in grid.trials:
        if spec.train.batch_size % workers:
            raise ConfigError(f"{grid.source}: combinations.{spec.combination}.train.batch_size: "
                              f"{spec.train.batch_size} is not divisible by --workers {workers} (the batch is "
                              "split evenly over the workers); change one of them")


def check_data(data_dir: str, grid: Grid, evaluate: bool = True, read_test: bool = True) -> dict:
    """Every split the run reads is present, whole and big enough: train and val for training,
    test too when evaluation follows (it reads test only after training, hours later).
    `read_test=False` checks the test split's count in the manifest without opening a shard
    (tuned arms: `verify_test_split` checks them when stage 2 starts)."""
    manifest = read_manifest(data_dir)  # its shape checked there (DatasetError naming the key)
    for split in ("train", "val") + (("test",) if evaluate else ()):
        if manifest["counts"].get(split, 0) == 0:
            why = " (evaluation reads it; --no-evaluate skips it)" if split == "test" else ""
            raise DatasetError(f"{data_dir}: the {split} split is empty{why} (counts {manifest['counts']})")
        if split != "test" or read_test:
            shard_paths(data_dir, split, verify=True)  # checksums once here; trials then skip it
    for spec in grid.trials:
        if spec.data.size > manifest["image_size"]:
            raise DatasetError(
                f"{data_dir}: prepared at {manifest['image_size']} px but trial {trial_key(spec)} asks for "
                f"{spec.data.size} px; re-run `ablate prepare SRC --out {data_dir} --size {spec.data.size}`"
            )
    check_conditions(data_dir, grid, manifest)
    return manifest


def verify_test_split(data_dir: str) -> None:
    """The test split's shards against their checksums: stage 2 of tuned arms, before it trains
    what will be evaluated on them (stage 1 never opens them)."""
    shard_paths(data_dir, "test", verify=True)


def check_conditions(data_dir: str, grid: Grid, manifest: dict) -> None:
    """Every `prior.condition` names a label column of the dataset (manifest.json's `labels`)
    that labels every image the prior reads: the train split it learns from and the val
    split its val loss is measured on."""
    labels = manifest.get("labels", {})
    for spec in grid.trials:
        column = spec.prior.condition if spec.prior is not None else None
        if column is None:
            continue
        key = f"{grid.source}: combinations.{spec.combination}.prior.condition"
        if column not in labels:
            has = (f"its label columns: {', '.join(sorted(labels))}" if labels else
                   "it has no label columns")
            raise ConfigError(f"{key}: {column!r} is not a label column of the dataset {data_dir} ({has}); name one "
                              f"of its columns, or prepare the dataset with `ablate prepare --index FILE` from an "
                              f"index file whose {column!r} column holds each image's label")
        missing = {s: n for s in ("train", "val") if (n := labels[column]["missing"].get(s, 0))}
        if missing:
            said = " and ".join(f"{n} of the {manifest['counts'][s]} {s} images" for s, n in missing.items())
            raise ConfigError(f"{key}: {said} of {data_dir} have no {column!r} label; a conditional prior learns "
                              "each train grid from its image's label (and measures its val loss the same way): "
                              "fill them in the index file and prepare again, or drop prior.condition")


def preflight_losses(grid: Grid, made_by_stage: Path | None = None) -> None:
    """Fail before Ray starts if a term's weights are missing or its options are wrong. A term
    whose file the foundation stage will make (`made_by_stage`) is checked when it is made."""
    from ablate.losses import LOSSES

    seen = set()
    for spec in grid.trials:
        for ls in spec.losses:
            if made_by_stage is not None and ls.options.get("weights") == str(made_by_stage):
                continue
            key = (ls.name, repr(sorted(ls.options.items())))
            if key in seen:
                continue
            seen.add(key)
            entry = LOSSES.get(ls.name)
            if entry.preflight is not None:
                entry.preflight(**ls.options)


def trial_table(grid: Grid) -> str:
    lines = [f"{'trial':<28} {'combination':<20} {'seed':>4}  {'input':<18} losses"]
    for spec in grid.trials:
        terms = ", ".join(f"{l.name}x{l.weight:g}" + ("(adaptive)" if l.adaptive else "") +
                          (f"@{l.start_step}" if l.start_step else "") for l in spec.losses)
        ec = spec.model.edge_channel
        family = None if ec is None else ec.get("family", "meijering")
        # target_only: the map is drawn, not read (models/edge_channel.py)
        inputs = ("rgb" if ec is None else f"rgb (->{family})" if ec.get("role") == "target_only"
                  else f"rgb+{family}")
        lines.append(f"{trial_key(spec):<28} {spec.combination:<20} {spec.seed:>4}  {inputs:<18} {terms}")
    return "\n".join(lines)
