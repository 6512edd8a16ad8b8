"""A split of the prepared dataset as code grids of a trial's final autoencoder: what its
prior learns. Ray Data streams the prepared shards through the autoencoder (`EncodeCodes`,
one actor) and writes Parquet shards of codes beside the trial's samples:

    EXP/samples/<trial>/prior/codes/<split>/*.parquet   {"codes": int32 list (h*w), "key": int64,
                                                         "label": int64 (a conditional prior's only)}
    EXP/samples/<trial>/prior/codes/<split>.json        written last: the autoencoder checkpoint,
                                                        the grid shape and the row count (and
                                                        the condition: its column and values)

A split whose `.json` names the same checkpoint (and condition) is not encoded again (a
resumed trial); a folder without it (an interrupted encoding) is ours to remove and is
written afresh. `label` is each image's class: the index of its label in the condition's
values (data/labels.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np

from ablate import storage
from ablate.data.labels import Condition

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodeSplit:
    """Where one split's codes are and their shape.

    Args:
        folder: the Parquet shards (a local folder or URI).
        rows: code grids in the split.
        grid: (h, w) of each grid (raster order in the Parquet list).
        vocab: the codebook size.
    """
    folder: str
    rows: int
    grid: tuple[int, int]
    vocab: int


class EncodeCodes:
    """map_batches callable (one actor holds the autoencoder): {"image": uint8 (N, 3, S, S),
    "key"(, "label")} -> {"codes": int32 (N, h*w), "key"(, "label")}."""

    def __init__(self, checkpoint: str, threads: int = 1, use_gpu: bool = False):
        import torch

        from ablate.models.checkpoint import read_checkpoint, rebuild_model

        torch.set_num_threads(threads)
        self.device = "cuda" if use_gpu else "cpu"
        self.model, self.edge = rebuild_model(read_checkpoint(checkpoint, self.device), self.device)

    def __call__(self, batch: dict) -> dict:
        import torch

        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(batch["image"])).to(self.device).float() / 255
            # The model's input as in training: the image, with its edge map for the paper's arm.
            codes = self.model.encode_codes(self.edge.model_input(x) if self.edge else x)
        out = {"codes": codes.flatten(1).to(torch.int32).cpu().numpy(), "key": batch["key"]}
        if "label" in batch:
            out["label"] = batch["label"]
        return out


def code_grid(checkpoint: str) -> tuple[tuple[int, int], int]:
    """((h, w) of the code grid, codebook size) of the autoencoder in `checkpoint`."""
    from ablate.models.checkpoint import read_checkpoint, rebuild_model

    state = read_checkpoint(checkpoint)
    model, _ = rebuild_model(state)
    side = state["model_spec"]["size"] // model.arch.downsampling()
    return (side, side), model.arch.n_embed


def encode_split(data_dir: str, split: str, size: int, checkpoint: str, folder: str, *, threads: int = 1,
                 gpus: float = 0.0, condition: Condition | None = None) -> CodeSplit | None:
    """Encode `split` of the prepared dataset with the autoencoder in `checkpoint` into
    `folder`/<split>/; None when the split is empty. Needs Ray running.

    Args:
        data_dir: the prepared dataset.
        split: "train" or "val".
        size: the trial's image size.
        checkpoint: the trial's final checkpoint folder.
        folder: the trial's codes folder (prior/codes).
        threads: torch threads of the encoding actor.
        gpus: GPUs of the encoding actor (the trial's per-worker share); 0 encodes on its CPU.
        condition: the prior's label column: each grid's class is kept beside it (`label`).
    """
    from ablate.data.shards import read_manifest
    from ablate.data.stream import split_dataset

    if not read_manifest(data_dir)["counts"].get(split, 0):
        return None
    shards, record = storage.join(folder, split), storage.join(folder, f"{split}.json")
    done = encoded(folder, split, checkpoint, condition)
    if done is not None:
        return done
    grid, vocab = code_grid(checkpoint)
    if storage.has_entries(shards):  # an interrupted encoding of ours (or of another condition): not these codes
        logger.info(f"{shards}: not the codes of this autoencoder and condition (or an earlier encoding did not "
                    f"finish); encoding {split} again")
        storage.delete_dir(shards)
    import ray.data

    # No progress bars (set before the dataset is made: it keeps the context it was made in):
    # this runs in a Tune trial's process, whose stdout is Tune's Tee, which has no isatty()
    # for Ray Data's progress manager to call, and goes to the trial's log anyway.
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = split_dataset(data_dir, split, size, verify=False, condition=condition)
    # Half a CPU: the read and write tasks need the rest of a machine as small as two cores
    # (with a whole CPU the actor and a read task wait on each other there).
    coded = ds.map_batches(EncodeCodes, fn_constructor_args=(str(checkpoint), threads, gpus > 0), batch_size=16,
                           batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.5,
                           num_gpus=gpus)
    coded.write_parquet(shards)
    rows = ray_count(shards)
    storage.write_text(record, json.dumps({"checkpoint": str(checkpoint), "rows": rows, "grid": list(grid),
                                           "vocab": vocab, **_labelled(condition)}))
    logger.info(f"{split}: {rows} images encoded to {grid[0]}x{grid[1]} codes -> {shards}")
    return CodeSplit(shards, rows, grid, vocab)


def _labelled(condition: Condition | None) -> dict:
    """What a codes record says of the condition: its column and values; nothing when unconditional."""
    return {} if condition is None else {"condition": {"column": condition.column, "values": list(condition.values)}}


def encoded(folder: str, split: str, checkpoint: str, condition: Condition | None) -> CodeSplit | None:
    """`split`'s codes in `folder` when its record names this autoencoder checkpoint and this
    condition (a resumed trial); None when they must be encoded (again)."""
    record = storage.join(folder, f"{split}.json")
    if not storage.is_file(record):
        return None
    done = json.loads(storage.read_text(record))
    if done.get("checkpoint") != str(checkpoint) or done.get("condition") != _labelled(condition).get("condition"):
        return None
    return CodeSplit(storage.join(folder, split), int(done["rows"]), (int(done["grid"][0]), int(done["grid"][1])),
                     int(done["vocab"]))


def ray_count(folder: str) -> int:
    """Rows of the Parquet shards in `folder` (read from their footers)."""
    import ray.data

    return int(ray.data.read_parquet(folder).count())
