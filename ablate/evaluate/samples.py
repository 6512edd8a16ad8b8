"""What the report's image grid shows, computed by evaluation's own functions: the
same few test images across configurations (each combination's lowest-seed finished
trial), the original and its vessel map, and per configuration the reconstruction
and its vessel map. Models are rebuilt from each trial's final checkpoint on the CPU,
as `ablate evaluate` does, and the segmenter is the one evaluation recorded. The
report only draws the result."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ablate import storage
from ablate.evaluate.reconstruct import reconstruct, reference_levels, to_tensor, to_uint8, vessel_maps
from ablate.models.checkpoint import locate_checkpoint

N_IMAGES = 4


@dataclass
class GridColumn:
    combination: str
    trial: str
    seed: int
    recon: list[np.ndarray] = field(default_factory=list)  # uint8 (H, W, 3)
    maps: list[np.ndarray] = field(default_factory=list)  # bool (H, W)
    ref_maps: list[np.ndarray] | None = None  # the originals' maps at this column's size, when it differs


@dataclass
class ImageGrid:
    ids: list[str]
    originals: list[np.ndarray]
    maps: list[np.ndarray]
    columns: list[GridColumn]
    segmenter: str
    notes: list[str] = field(default_factory=list)


def segmenter_used(notes: dict, segmenter: str | None) -> str:
    """The spec `load_segmenter` takes, for the segmenter evaluation used (from eval/notes.json
    and the results' `segmenter` column)."""
    from ablate.segmenter.unet_file import DEFAULT_WEIGHTS

    note = str(notes.get("segmenter", ""))
    m = re.search(r"segmenter '(.+)' as requested", note)
    if m:
        return m.group(1)
    m = re.match(r"U-Net segmenter (.+)$", note)
    if m:
        return m.group(1).strip()
    name = segmenter or ""
    if name.startswith("ridge"):
        return name
    if name.startswith("unet"):
        return str(DEFAULT_WEIGHTS)
    return "ridge"


def pick_images(ids: list[str], k: int) -> list[int]:
    """k indices spread evenly over the test split (its first and last image included)."""
    if k <= 0 or not ids:
        return []
    if k >= len(ids):
        return list(range(len(ids)))
    return sorted({int(i) for i in np.rint(np.linspace(0, len(ids) - 1, k))})  # rint: round half to even, as round()


def build_image_grid(exp: Path, data: str | None, trials: pd.DataFrame, combinations: list[str], baseline: str,
                     segmenter: str, n_images: int = N_IMAGES) -> tuple[ImageGrid | None, list[str]]:
    """(grid, warnings): `n_images` test images for every configuration; the grid is None
    (with the reason in the warnings) when the data, the segmenter or every checkpoint is missing.

    Args:
        exp: the experiment folder (checkpoints are looked up under it first).
        data: the prepared dataset (folder or URI) grid.json records.
        trials: results.parquet's rows (trial, combination, seed, status, checkpoint, config.data.size).
        combinations: the columns, in order.
        baseline: the combination whose image size is the reference.
        segmenter: the spec of the segmenter evaluation used (`segmenter_used`).
        n_images: test images shown.
    """
    from ablate.evaluate.run import load_test_split
    from ablate.segmenter.unet_file import load_segmenter

    if n_images <= 0:
        return None, []
    if not data or not storage.is_dir(data):
        return None, [f"image grid left out: the test data {data!r} recorded in grid.json is not here"]
    try:
        seg = load_segmenter(segmenter)
    except (FileNotFoundError, ValueError) as ex:
        return None, [f"image grid left out: segmenter {segmenter!r} cannot be loaded ({ex})"]
    done = trials[(trials["status"] == "done")]
    if done.empty:
        return None, ["image grid left out: no finished trial"]
    size_of = lambda r: int(r.get("config.data.size") or 0)
    base_rows = done[done["combination"] == baseline]
    ref_size = size_of((base_rows if len(base_rows) else done).iloc[0].to_dict())
    splits: dict[int, dict] = {}

    def split(size: int) -> dict:
        if size not in splits:
            splits[size] = load_test_split(data, size)
        return splits[size]

    try:
        ref = split(ref_size)
    except Exception as ex:  # noqa: BLE001 - the report goes on without pictures, saying why
        return None, [f"image grid left out: cannot read the test split of {data} ({type(ex).__name__}: {ex})"]
    idx = pick_images(ref["ids"], n_images)
    ids = [ref["ids"][i] for i in idx]
    ref_levels = reference_levels(seg, ref["images"][idx], ref["fov"][idx])
    grid = ImageGrid(ids=ids, originals=[ref["images"][i] for i in idx], columns=[], segmenter=seg.name,
                     maps=list(vessel_maps(seg, ref["images"][idx], ref["fov"][idx], ref_levels)))
    for comb in combinations:
        rows = done[done["combination"] == comb].sort_values("seed")
        col = None
        for r in rows.to_dict("records"):
            ckpt = locate_checkpoint(exp, r.get("checkpoint"))
            if ckpt is None:
                continue
            try:
                data_at = split(size_of(r))
                pos = [data_at["ids"].index(i) for i in ids]
                imgs, fov = data_at["images"][pos], data_at["fov"][pos]
                recon = to_uint8(reconstruct(ckpt, to_tensor(imgs)))
                levels = ref_levels if size_of(r) == ref_size else reference_levels(seg, imgs, fov)
                col = GridColumn(comb, r["trial"], int(r["seed"]), list(recon),
                                 list(vessel_maps(seg, recon, fov, levels)))
                if size_of(r) != ref_size:
                    grid.notes.append(f"`{comb}` runs at {size_of(r)} px; its maps are compared with the "
                                      f"original's at that size")
                    col.ref_maps = list(vessel_maps(seg, imgs, fov, levels))
                break
            except Exception as ex:  # noqa: BLE001 - one unreadable trial must not cost the whole grid; said
                grid.notes.append(f"`{comb}`: trial {r['trial']} could not be reconstructed ({type(ex).__name__}: {ex})")
        if col is None:
            grid.notes.append(f"`{comb}`: no finished trial with a readable checkpoint; column left out")
        else:
            grid.columns.append(col)
    return grid, []
