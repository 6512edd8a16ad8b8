"""Judging a trial's samples (ablate.evaluate.synthesis): copies of train images are flagged as
memorised in pixels and in Inception features, with their train images as the closest pairs at
distance 0; noisy held-out images are not; the row has exactly the contract's columns and its
numbers are the judges' own. The per-trial function is called directly (no Ray) on DRIVE at
32 px: 8 test, 8 train and 8 held-out images, the ridge segmenter (no weights)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ablate.evaluate.morphology import FEATURES

# eval/samples.parquet's columns as issue 28's contract names them
CONTRACT = {"trial", "combination", "seed", "size", "n_samples", "n_real", "n_train", "fid", "kid", "fd_fm", "fm",
            "precision", "recall", "density", "coverage", *(f"morph_w1.{f}" for f in FEATURES),
            *(f"morph_floor.{f}" for f in FEATURES), "mem_share", "mem_p", "mem_flag", "mem_chance",
            "mem_share_px", "mem_p_px", "mem_flag_px", "segmenter"}
IDENTITY = {"trial": "l1-s0", "combination": "l1", "seed": 0}


def _write(folder: Path, images: np.ndarray) -> Path:
    from ablate.data.sample_store import write_chunk

    write_chunk(folder, 0, images, seed=1, condition=None, top_k=None, temperature=1.0, prior_step=10)
    return folder


@pytest.fixture(scope="module")
def splits(tmp_path_factory, drive_dir) -> dict:
    """DRIVE at 32 px: test 01-08, train 21-28, and 09-16 held out (as `val`)."""
    from ablate.data.shards import prepare
    from ablate.evaluate.run import load_test_split

    root = tmp_path_factory.mktemp("synthesis")
    rows = [f"{drive_dir}/images/{k:02d}_test.tif,test,{drive_dir}/fov/{k:02d}_test.gif" for k in range(1, 9)]
    rows += [f"{drive_dir}/images/{k}_training.tif,train,{drive_dir}/fov/{k}_training.gif" for k in range(21, 29)]
    rows += [f"{drive_dir}/images/{k:02d}_test.tif,val,{drive_dir}/fov/{k:02d}_test.gif" for k in range(9, 17)]
    (root / "index.csv").write_text("path,split,fov\n" + "\n".join(rows) + "\n")
    prepare(None, root / "prepared", size=32, index=root / "index.csv", cpus=1)
    return {s: load_test_split(str(root / "prepared"), 32, (s,)) for s in ("test", "train", "val")}


@pytest.fixture(scope="module")
def real(splits, one_thread):
    """The real side, built as `ablate evaluate` builds it (reference_chunk over the test split)."""
    from ablate.evaluate.run import reference_chunk
    from ablate.evaluate.synthesis import inception_features, real_images

    test, train = splits["test"], splits["train"]
    refs = [reference_chunk(test["images"], test["fov"], "ridge", {"inception": True})]
    return real_images(test, refs, train, inception_features(train["images"])), refs


@pytest.fixture(scope="module")
def copies(real, splits, tmp_path_factory):
    from ablate.evaluate.synthesis import judge_trial

    folder = _write(tmp_path_factory.mktemp("copies") / "l1-s0", splits["train"]["images"])
    return judge_trial(IDENTITY, str(folder), real[0], "ridge", {"inception": True})


@pytest.fixture(scope="module")
def noisy(real, splits, tmp_path_factory):
    """Held-out images with Gaussian noise (SD 6 grey levels) inside their FOV."""
    from ablate.evaluate.synthesis import judge_trial

    held = splits["val"]
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 6, held["images"].shape) * held["fov"][..., None]
    images = np.clip(held["images"] + noise, 0, 255).round().astype(np.uint8)
    folder = _write(tmp_path_factory.mktemp("noisy") / "l1-s0", images)
    return judge_trial(IDENTITY, str(folder), real[0], "ridge", {"inception": True}), images


def test_copies_of_train_images_are_memorised_with_their_train_images_as_closest_pairs(copies, splits):
    row = copies.row
    assert row["mem_flag"] is True and row["mem_flag_px"] is True
    assert row["mem_share"] == 1.0 and row["mem_share_px"] == 1.0 and row["mem_p"] < 0.01
    train_ids = splits["train"]["ids"]
    for space in ("features", "pixels"):
        pairs = [n for n in copies.neighbours if n["space"] == space]
        assert [n["rank"] for n in pairs] == list(range(8))
        for n in pairs:
            assert n["distance"] < 1e-6, (space, n)
            # sample c00000-00k is a copy of train image k
            assert n["train_id"] == train_ids[int(n["sample_id"].split("-")[1])], (space, n)
            assert n["sample_png"] == n["train_png"]  # both the same image's PNG
    assert row["n_samples"] == 8 and row["n_real"] == 8 and row["n_train"] == 8 and row["size"] == 32


def test_noisy_held_out_images_are_not_memorised(noisy):
    row = noisy[0].row
    assert row["mem_flag"] is False and row["mem_flag_px"] is False
    assert row["mem_share_px"] <= 0.25 and row["mem_share"] <= 0.25
    assert all(n["distance"] > 1.0 for n in noisy[0].neighbours if n["space"] == "pixels")
    assert row["mem_chance"] == pytest.approx(1 / 9)  # j = 1 of n = 8 test images


def test_the_row_has_exactly_the_contract_columns(copies, noisy):
    assert set(copies.row) == CONTRACT and set(noisy[0].row) == CONTRACT
    assert {k: noisy[0].row[k] for k in IDENTITY} == IDENTITY
    assert noisy[0].row["segmenter"].startswith("ridge") and noisy[0].row["fm"] == ""
    assert any("FOV" in n for n in noisy[0].notes)


def test_every_metric_column_has_a_direction_the_contract_gives():
    from ablate.evaluate.synthesis import COLUMNS, metric_info
    from ablate.metric_info import Better

    assert set(COLUMNS) == CONTRACT
    lower = ["fid", "kid", "fd_fm", "mem_share", "mem_share_px", *(f"morph_w1.{f}" for f in FEATURES)]
    assert all(metric_info(c).better is Better.LOWER for c in lower)
    assert all(metric_info(c).better is Better.HIGHER for c in ("precision", "recall", "coverage"))
    assert not metric_info("density").may_vote and not metric_info("mem_share").may_vote
    assert metric_info("morph_floor.density").better is None and metric_info("trial") is None


def test_set_and_morphology_numbers_are_the_judges_own(noisy, real):
    """The same samples through each judge by hand: the row's numbers are theirs."""
    import torch

    from ablate.data.preprocess import threshold_fov
    from ablate.evaluate.fidelity import frechet_distance_from_samples
    from ablate.evaluate.morphology import vessel_features
    from ablate.evaluate.reconstruct import vessel_maps
    from ablate.evaluate.sample_manifold import density_coverage, precision_recall
    from ablate.evaluate.sample_morphology import as_metrics, morphology_distances
    from ablate.evaluate.synthesis import inception_features
    from ablate.segmenter.unet_file import load_segmenter

    judged, images = noisy
    r, refs = real
    row = judged.row
    fake = inception_features(images)
    assert row["fid"] == pytest.approx(frechet_distance_from_samples(r.test_inception, fake), rel=1e-9)
    assert {k: row[k] for k in ("precision", "recall")} == precision_recall(r.test_inception, fake)
    assert {k: row[k] for k in ("density", "coverage")} == density_coverage(r.test_inception, fake)
    fov = np.stack([threshold_fov(im) for im in images])
    maps = vessel_maps(load_segmenter("ridge"), torch.tensor(images).permute(0, 3, 1, 2).float() / 255, fov)
    mine = [vessel_features(m, f) for m, f in zip(maps, fov)]
    theirs = as_metrics(morphology_distances({f: [d[f] for d in mine] for f in FEATURES},
                                             {f: [d[f] for d in refs[0]["features"]] for f in FEATURES}))
    for f in FEATURES:
        assert row[f"morph_w1.{f}"] == pytest.approx(theirs[f"sample_w1_{f}"], nan_ok=True), f
        assert row[f"morph_floor.{f}"] == pytest.approx(theirs[f"split_half_w1_{f}"], nan_ok=True), f
    assert np.isfinite(row["morph_w1.density"]) and np.isfinite(row["morph_floor.density"])


def test_the_tables_hold_one_row_per_trial_and_the_pairs(copies, noisy, tmp_path):
    from ablate.evaluate.synthesis_tasks import write_tables

    write_tables(tmp_path, [])
    assert not (tmp_path / "eval").exists()  # no samples, neither file
    from dataclasses import replace

    other = replace(noisy[0], row={**noisy[0].row, "trial": "l2-s0"},
                    neighbours=[{**n, "trial": "l2-s0"} for n in noisy[0].neighbours])
    write_tables(tmp_path, [copies, other])
    table = pd.read_parquet(tmp_path / "eval" / "samples.parquet")
    assert list(table["trial"]) == ["l1-s0", "l2-s0"] and set(table.columns) == CONTRACT
    assert table["mem_flag"].tolist() == [True, False]
    pairs = pd.read_parquet(tmp_path / "eval" / "sample_neighbours.parquet")
    assert len(pairs) == 32 and set(pairs.groupby(["trial", "space"]).size()) == {8}


def test_the_vessel_sheet_is_the_contact_sheet_with_exactly_the_mapped_pixels_painted():
    import io

    from PIL import Image

    from ablate.data.sample_store import contact_sheet
    from ablate.evaluate.synthesis import VESSEL_RGB, vessel_sheet

    rng = np.random.default_rng(0)
    images = rng.integers(0, 200, (20, 16, 16, 3), dtype=np.uint8)  # no cyan: its blue and green are < 255
    maps = rng.random((20, 16, 16)) < 0.1
    plain = np.asarray(Image.open(io.BytesIO(contact_sheet(images[:16]))))
    drawn = np.asarray(Image.open(io.BytesIO(vessel_sheet(images, maps))))
    assert drawn.shape == plain.shape  # the contact sheet's first 16, tiled the same way
    painted = (drawn != plain).any(axis=2)
    assert (drawn[painted] == VESSEL_RGB).all()
    tiles = painted.reshape(-1)  # every painted pixel is a map pixel of a shown sample, and all are painted
    marked = np.where(maps[:16, ..., None], 100, 0).astype(np.uint8)  # 100: neither the sheet's white gaps nor 0
    expected = np.asarray(Image.open(io.BytesIO(contact_sheet(marked))))[..., 0] == 100
    assert (painted == expected).all() and tiles.sum() == maps[:16].sum()


@pytest.mark.ray
def test_evaluate_judges_the_samples_of_a_trial_that_has_them(tiny_experiment, tmp_path, drive32):
    """`ablate evaluate` on the session's experiment with samples for one trial: eval/samples.parquet
    holds that trial's row; the reconstructions' per-image table is as without samples."""
    from ablate.evaluate.run import EvalOptions, evaluate_experiment, load_test_split
    from ablate.experiment_layout import ExperimentLayout

    exp = tmp_path / "e2e"
    shutil.copytree(tiny_experiment, exp)  # the session's experiment is read-only for tests
    before = pd.read_parquet(exp / "eval" / "per_image.parquet")
    trial = min(pd.read_parquet(exp / "results.parquet")["trial"])
    _write(Path(ExperimentLayout(exp).trial_samples(trial)), load_test_split(str(drive32), 32, ("train",))["images"][:8])
    evaluate_experiment(EvalOptions(exp=str(exp), segmenter="ridge"))
    table = pd.read_parquet(exp / "eval" / "samples.parquet")
    assert list(table["trial"]) == [trial] and set(table.columns) == CONTRACT
    assert bool(table["mem_flag_px"].iloc[0])  # copies of train images
    pairs = pd.read_parquet(exp / "eval" / "sample_neighbours.parquet")
    assert set(pairs["trial"]) == {trial} and len(pairs) == 16
    pd.testing.assert_frame_equal(pd.read_parquet(exp / "eval" / "per_image.parquet"), before)
    from PIL import Image

    sheet = Image.open(exp / "eval" / "sample_vessels" / f"{trial}.png")  # 8 samples, 4 across, their maps drawn
    assert sheet.size == (4 * 32 + 3 * 2, 2 * 32 + 2)
