"""The soft vessel reference (ablate.data.soft_reference, issue 31): the box-filter area fraction of
the resized mask beside the binary one, what binarising lost per image (shard columns) and per split
(manifest.json), and a dataset without masks unchanged."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ablate.data.preprocess import decode_png, preprocess
from ablate.data.shards import load_manifest, prepare, shard_paths
from ablate.data.soft_reference import losses, skeleton_length, soft_resize
from tests.helpers.images import synthetic_fundus


def _quarters_mask() -> tuple[np.ndarray, np.ndarray]:
    """A 16x16 mask whose 4x4 blocks hold k vessel pixels (k = 0..15 across the 4x4 grid of blocks),
    and the fraction each block holds: k / 16."""
    mask = np.zeros((16, 16), bool)
    k = np.arange(16).reshape(4, 4)
    for r in range(4):
        for c in range(4):
            block = np.zeros(16, bool)
            block[np.random.default_rng(int(k[r, c])).permutation(16)[: k[r, c]]] = True  # scattered, not a corner
            mask[4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = block.reshape(4, 4)
    return mask, k / 16


def test_the_soft_reference_is_the_box_filter_area_fraction():
    mask, frac = _quarters_mask()
    soft = soft_resize(mask, 4)
    assert soft.dtype == np.uint8
    # round(255 * k / 16), halves up: k = 8 is 127.5 -> 128, so exactly half a pixel counts as vessel
    assert soft.tolist() == np.floor(255 * frac + 0.5).astype(int).tolist()
    assert soft[2, 0] == 128  # k = 8
    # and through preprocess: a photograph whose FOV is the whole frame is cropped to itself, so
    # the soft reference of its mask (scaled 4x to 64 px) holds the same fractions
    big = np.kron(mask, np.ones((16, 16), bool))  # 256 px, each block 64x64 with k/16 of it vessel
    assert soft_resize(big, 4).tolist() == soft.tolist()


def _write_photograph(folder, name: str, vessel: np.ndarray):
    """A synthetic fundus photograph `name`.png of vessel's size, its whole-frame FOV mask and vessel mask."""
    h, w = vessel.shape
    synthetic_fundus(1, size=(w, h)).save(folder / f"{name}.png")
    Image.fromarray(np.full((h, w), 255, np.uint8)).save(folder / f"{name}_fov.png")
    Image.fromarray(vessel.astype(np.uint8) * 255).save(folder / f"{name}_vessel.png")


def _line_and_bar() -> np.ndarray:
    """256 x 256: a one-pixel vertical line the whole height (column 101), and an 8-pixel bar
    on columns 160-167, rows 64-191 (aligned to a 4x downscale's pixels)."""
    m = np.zeros((256, 256), bool)
    m[:, 101] = True
    m[64:192, 160:168] = True
    return m


def test_a_one_pixel_line_downscaled_4x_vanishes_from_the_binary_reference_but_keeps_its_mass(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    mask = _line_and_bar()
    _write_photograph(src, "eye", mask)
    p = preprocess(src / "eye.png", 64, fov=src / "eye_fov.png", vessel=src / "eye_vessel.png")
    assert p.vessel is not None and p.vessel_soft is not None
    # the line: a quarter of each output pixel of column 25 (101 // 4), so 64 (round(63.75)), and 0 in the binary
    assert p.vessel_soft[:, 25].tolist() == [64] * 64
    assert not p.vessel[:, 25].any()
    # the bar: whole pixels in both
    assert (p.vessel_soft[16:48, 40:42] == 255).all() and p.vessel[16:48, 40:42].all()
    assert p.vessel.sum() == 64 and p.vessel_soft.sum() == 64 * 255 + 64 * 64
    # soft mass: the bar's 64 px and the line's 256 source px / 16 = 16 px (as stored: 64 * 64/255)
    area, length = losses(p.vessel, p.vessel_soft)
    assert area == pytest.approx(1 - 64 / (64 + 64 * 64 / 255), abs=1e-12)  # ~0.2, the line's share
    bar = skeleton_length(p.vessel)
    assert bar > 20  # the binary keeps the bar's centreline
    assert length == pytest.approx(1 - bar / (bar + 64), abs=1e-12)  # the line's 64 px of length lost

    # The loss record in the shards and the manifest, through prepare.
    (src / "index.csv").write_text("path,split,fov,vessel\neye.png,test,eye_fov.png,eye_vessel.png\n")
    prepare(None, tmp_path / "out", size=64, index=src / "index.csv")
    row = pq.read_table(shard_paths(tmp_path / "out", "test")[0]).to_pylist()[0]
    assert decode_png(row["vessel_soft"]).tolist() == p.vessel_soft.tolist()
    assert (decode_png(row["vessel"]) > 127).tolist() == p.vessel.tolist()  # the binary column as before
    assert (row["vessel_area_lost"], row["vessel_length_lost"]) == (area, length)
    ref = load_manifest(tmp_path / "out").vessel_reference
    assert ref is not None and "area fraction" in ref.soft and ">= 0.5" in ref.binary
    assert set(ref.loss) == {"test"}
    t = ref.loss["test"]
    assert (t.images, t.area_lost_mean, t.area_lost_max) == (1, round(area, 6), round(area, 6))
    assert (t.length_lost_mean, t.length_lost_max) == (round(length, 6), round(length, 6))


def test_a_line_only_mask_loses_everything_and_an_empty_mask_nothing():
    line = np.zeros((256, 256), bool)
    line[:, 101] = True
    soft = soft_resize(line, 64)
    binary = soft >= 128
    assert not binary.any() and soft.sum() == 64 * 64
    assert losses(binary, soft) == (1.0, 1.0)
    empty = np.zeros((64, 64), np.uint8)
    assert losses(empty > 0, empty) == (0.0, 0.0)


def test_a_dataset_without_vessel_masks_has_no_soft_columns_nor_manifest_key(tmp_path):
    from tests.helpers.images import synthetic_fundus_folder

    synthetic_fundus_folder(tmp_path / "src", n=3)
    prepare(tmp_path / "src", tmp_path / "out", size=32)
    assert "vessel_reference" not in json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert load_manifest(tmp_path / "out").vessel_reference is None
    assert pq.read_schema(shard_paths(tmp_path / "out", "train")[0]).names == [
        "id", "source", "split", "image", "fov", "vessel", "orig_height", "orig_width", "fov_source"]


def test_a_manifest_from_before_soft_references_still_reads(drive32):
    """A dataset prepared before soft references: no `vessel_reference` key, no soft columns; it loads."""
    m = json.loads((drive32 / "manifest.json").read_text())
    assert m["vessel_reference"]["loss"]["test"]["images"] == 20  # DRIVE: masks, so the key is there
    del m["vessel_reference"]
    from ablate.data.dataset import Manifest

    assert Manifest.model_validate(m).vessel_reference is None
