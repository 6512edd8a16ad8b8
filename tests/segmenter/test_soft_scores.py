"""Scores against the soft vessel reference (ablate.segmenter.scores, issue 31): soft Dice by its
formula and equal to Dice on a binary reference, clDice by hand, and `evaluate_split` /
`ablate segmenter evaluate` naming the reference of each number, or saying the soft one is not
available for a dataset prepared before soft references."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ablate.segmenter.scores import (
    SOFT_NOT_AVAILABLE,
    cldice,
    dice,
    format_metrics,
    reference_scores,
    soft_dice,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_soft_dice_is_its_formula_and_dice_on_a_binary_reference():
    pred = np.array([1, 1, 0, 0, 1], bool)
    soft = np.array([0.5, 0.25, 1.0, 0.0, 0.0])
    # 2 * (0.5 + 0.25) / (3 + 1.75)
    assert soft_dice(pred, soft) == pytest.approx(1.5 / 4.75, abs=1e-15)
    rng = np.random.default_rng(0)
    for _ in range(5):
        p, t = rng.random((32, 32)) < 0.3, rng.random((32, 32)) < 0.2
        assert soft_dice(p, t.astype(float)) == pytest.approx(dice(p, t), abs=1e-15)
    assert soft_dice(np.zeros(3, bool), np.zeros(3)) == 1.0
    with pytest.raises(ValueError, match="outside"):
        soft_dice(pred, soft * 255)  # the stored 8-bit values, not fractions


def test_cldice_by_hand():
    ref = np.zeros((9, 20), bool)
    ref[4, 2:12] = True  # a one-pixel line: its own skeleton, 10 px
    half = np.zeros_like(ref)
    half[4, 2:7] = True  # covers 5 of its 10 skeleton px; its own skeleton (5 px) lies inside it
    assert cldice(half, ref) == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert cldice(ref, ref) == 1.0
    off = np.zeros_like(ref)
    off[1, 2:12] = True  # parallel, never touching
    assert cldice(off, ref) == 0.0
    both = off | half  # 10 + 5 skeleton px, 5 inside the reference; covers 5 of its 10
    assert cldice(both, ref) == pytest.approx(2 * (5 / 15) * 0.5 / (5 / 15 + 0.5))


def test_reference_scores_name_the_reference_and_say_soft_is_not_available():
    pred = np.zeros((1, 8, 8), bool)
    pred[0, 2, 1:7] = True
    vessel, fov = pred.copy(), np.ones((1, 8, 8), bool)
    soft = pred.astype(float) * 0.75
    soft[0, 5, 1:7] = 0.25  # a thin vessel the binary reference lost
    m = reference_scores(pred, vessel, soft, fov)
    assert m["soft_dice"] == pytest.approx(2 * 6 * 0.75 / (6 + 6 * 0.75 + 6 * 0.25))
    assert m["cldice_binary"] == 1.0
    assert m["cldice_soft"] == pytest.approx(2 * 1 * 0.5 / 1.5)  # half the soft support's skeleton covered
    assert m["references"]["dice"].startswith("binary") and m["references"]["soft_dice"].startswith("soft")
    old = reference_scores(pred, vessel, None, fov)
    assert old["soft_dice"] is None and old["cldice_soft"] is None
    assert old["references"]["soft_dice"] == SOFT_NOT_AVAILABLE == "not available (prepared before soft references)"


def _without_soft_columns(prepared, out):
    """`prepared` as a dataset from before soft references: its shards without the soft columns,
    the manifest without `vessel_reference` and with the shards' new checksums."""
    shutil.copytree(prepared, out)
    manifest = json.loads((out / "manifest.json").read_text())
    for s in manifest["shards"]:
        p = out / s["file"]
        table = pq.read_table(p)
        pq.write_table(table.drop_columns(["vessel_soft", "vessel_area_lost", "vessel_length_lost"]), p,
                       compression="zstd")
        s["sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
    del manifest["vessel_reference"]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out


def test_evaluate_scores_both_references_or_says_soft_is_not_available(drive32, tmp_path):
    from ablate.segmenter.cli import app as seg_app
    from ablate.segmenter.evaluation import evaluate_split
    from ablate.segmenter.labelled import load_labelled
    from ablate.segmenter.unet_file import load_segmenter

    seg = load_segmenter("ridge")
    m = evaluate_split(seg, drive32, "test")
    assert m["n_images"] == 20 and 0 < m["soft_dice"] < 1 and 0 < m["cldice_soft"] <= 1
    assert m["references"]["cldice_soft"].startswith("soft") and m["references"]["auc"].startswith("binary")
    assert 0 < m["reference_area_lost_mean"] < 1  # DRIVE at 32 px: the binary loses much of the vessel area
    # soft Dice by hand from the shards' soft column
    from ablate.data.preprocess import decode_png
    from ablate.segmenter.evaluation import predict_arrays

    lab = load_labelled(drive32, "test")
    from ablate.data.shards import shard_paths

    rows = {r["id"]: r for p in shard_paths(drive32, "test") for r in pq.read_table(p).to_pylist()}
    s = np.stack([decode_png(rows[i]["vessel_soft"]) / 255.0 for i in lab.ids])
    pred = (predict_arrays(seg, lab.images, lab.fov) > seg.threshold) & lab.fov
    want = 2 * (pred * s)[lab.fov].sum() / (pred[lab.fov].sum() + s[lab.fov].sum())
    assert m["soft_dice"] == pytest.approx(want, abs=1e-7)  # the fractions are held as float32
    assert "against the binary reference" in format_metrics(m) and "against the soft reference" in format_metrics(m)

    old = _without_soft_columns(drive32, tmp_path / "old")
    m_old = evaluate_split(seg, old, "test")
    assert m_old["dice"] == m["dice"] and m_old["cldice_binary"] == m["cldice_binary"]  # the binary scores as before
    assert m_old["soft_dice"] is None and m_old["references"]["soft_dice"] == SOFT_NOT_AVAILABLE
    r = CliRunner().invoke(seg_app, ["evaluate", "--data", str(old), "--segmenter", "ridge",
                                     "--json", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    assert "against the soft reference: not available (prepared before soft references)" in r.output
    said = json.loads((tmp_path / "m.json").read_text())
    assert said["soft_dice"] is None and said["references"]["cldice_soft"] == SOFT_NOT_AVAILABLE
