"""End to end through Ray Data -> Ray Train -> Ray Tune on real DRIVE images (32 px).

Slow by nature (a trial's start-up is tens of seconds here), so the grid is two
tiny trials, plus one trial with two DDP workers.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ablate.pipeline import LaunchOptions, launch
from tests.helpers.tensorboard import tensorboard_events

pytestmark = pytest.mark.ray


def test_two_trial_grid(tiny_experiment):
    out = tiny_experiment
    df = pd.read_parquet(out / "results.parquet")
    assert sorted(df["combination"]) == ["l1", "l2"]
    assert (df["status"] == "done").all() and (df["steps"] == 6).all()
    assert df["val/psnr"].notna().all() and df["checkpoint"].notna().all() and (df["workers"] == 1).all()
    assert {"config.train.lr", "config.model.preset", "wall_time_s", "startup_s"} <= set(df.columns)
    assert df.loc[df.combination == "l1", "val/loss/l1"].notna().all()
    # 6 steps of 4 run past the 18-image epoch, and two validations ran: each split was
    # streamed (read + decoded) by Ray Data once, later passes came from the worker's memory.
    assert (df["data/train_passes_streamed"] == 1).all() and (df["data/val_passes_streamed"] == 1).all()
    csv = pd.read_csv(out / "results.csv")
    assert len(csv) == 2
    for _, row in df.iterrows():
        acc = tensorboard_events(out / "tensorboard" / row["trial"])
        tags = set(acc.Tags()["scalars"])
        term = row["combination"]
        assert {f"loss/{term}", "loss/codebook", "loss/total", "lr", "perf/images_per_s",
                f"val/loss/{term}", "val/psnr"} <= tags
        assert [e.step for e in acc.Scalars(f"loss/{term}")] == [2, 4, 6]
        images = acc.Images("images/input|reconstruction")
        assert [e.step for e in images] == [3, 6]
        assert images[0].width == 2 * 32 and images[0].height == 4 * 32  # 4 rows of input | reconstruction
        assert Path(row["checkpoint"]).is_dir()
    # Evaluated on DRIVE's 20 test images automatically after training.
    per_image = pd.read_parquet(out / "eval" / "per_image.parquet")
    assert len(per_image) == 2 * 20 and set(per_image["trial"]) == set(df["trial"])
    assert {"psnr", "ssim", "dice", "cldice", "betti0_error", "recon.density", "orig.density"} <= set(per_image.columns)
    assert (per_image["segmenter"] == "ridge:meijering+otsu").all()  # no trained U-Net in a fresh test run
    assert df["test/fid"].notna().all() and df["test/psnr"].notna().all() and (df["segmenter"] == "ridge:meijering+otsu").all()
    means = per_image.groupby("trial")["psnr"].mean()
    for _, row in df.iterrows():
        assert row["test/psnr"] == pytest.approx(means[row["trial"]])


def test_one_trial_with_two_ddp_workers(ray_local, drive32, tmp_path):
    from tests.helpers import TINY_GRID

    one = tmp_path / "one.yaml"
    one.write_text(TINY_GRID.replace("  l2: {losses: {l2: {weight: 1.0}}}\n", ""))
    out = launch(LaunchOptions(grid=str(one), data=str(drive32), out=str(tmp_path / "ddp"), workers=2, evaluate=False))
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == 1 and df.loc[0, "status"] == "done" and df.loc[0, "steps"] == 6
    assert df.loc[0, "workers"] == 2  # reported by the workers themselves
    # Each worker read its own half of the 18 training images in the first epoch.
    assert df.loc[0, "data/rows_per_worker_epoch0"] == "9,9" and df.loc[0, "data/shared_rows_epoch0"] == 0
    assert df.loc[0, "config.train.batch_size"] == 4  # global batch: 2 per worker
