"""`ablate segmenter train` (ablate.segmenter.train): options checked before Ray starts, and
the U-Net trained through Ray on DRIVE prepared at 64 px for a few steps, then loaded from
the file it writes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ablate.segmenter.cli import app as seg_app
from ablate.segmenter.evaluation import evaluate_split
from ablate.segmenter.input_norm import InputNorm
from ablate.segmenter.unet_file import load_segmenter

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- Ray end to end


@pytest.mark.bad_input
def test_train_validates_before_ray(drive64, tmp_path):
    from ablate.runtime import RunOptions
    from ablate.segmenter.train import train_segmenter

    with pytest.raises(ValueError, match="patch 96 px"):
        train_segmenter(drive64, tmp_path / "x.pth", patch=96)
    with pytest.raises(ValueError, match="divisible"):
        train_segmenter(drive64, tmp_path / "x.pth", RunOptions(steps=10, batch_size=3, lr=1e-3, workers=2), patch=32)
    r = CliRunner().invoke(seg_app, ["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "x.pth")])
    assert r.exit_code == 2 and "not a prepared dataset" in r.output


@pytest.mark.ray
def test_train_end_to_end_with_ray(ray_local, drive64, tmp_path):
    from ablate.runtime import RunOptions, ray_output
    from ablate.segmenter.train import train_segmenter

    out = tmp_path / "weights" / "drive_unet.pth"
    ray_output.set_verbose(False)  # the command's default: Ray's output to files beside the run
    try:
        r = train_segmenter(drive64, out, RunOptions(steps=3, batch_size=4, lr=2e-3, log_every=1), patch=32,
                            patches_per_image=4, val_every=3, arch={"base": 4, "levels": 3}, zoom=1.3,
                            norm="clahe-green")
    finally:
        ray_output.set_verbose(True)
        ray_output.restore_driver()
    # Gathered beside the run (this test's Ray was started by the fixture, so there is no
    # session or driver log of ours to copy: the folder is what the shared driver made).
    assert (r.run_dir / "logs").is_dir()
    assert r.out_file == out and out.is_file()
    seg = load_segmenter(out)
    assert seg.name == "unet:drive_unet" and seg.size == 64
    m = seg.metrics
    assert m["segmenter"] == "unet:drive_unet" and m["split"] == "test" and m["n_images"] == 20
    assert 0 <= m["dice"] <= 1 and 0 <= m["auc"] <= 1
    meta = seg.meta
    assert meta["arch"] == {"base": 4, "levels": 3, "norm": "batch"} and meta["training"]["steps"] == 3
    assert "18 images at 64 px" in meta["trained_on"]
    # The options are recorded, and the loaded file applies its input normalisation: it scores
    # the test split exactly as the network did when training ended.
    t = meta["training"]
    assert t["camera"] == "on" and t["zoom"] == 1.3 and t["jitter"]["zoom"] == 1.3 and t["input"] == "clahe-green"
    assert meta["input"] == "clahe-green" and seg.norm is InputNorm.CLAHE_GREEN
    again = evaluate_split(seg, drive64, "test")
    assert (again["dice"], again["auc"], again["threshold"]) == (m["dice"], m["auc"], m["threshold"])
    assert "val/dice" in r.last and "seg/loss" in r.last
    assert any(r.tb_dir.glob("events.out.tfevents.*"))
    # The evaluate command scores it (and the fallback) and names the segmenter.
    cli = CliRunner()
    res = cli.invoke(seg_app, ["evaluate", "--data", str(drive64), "--segmenter", str(out)])
    assert res.exit_code == 0, res.output
    binary = "against the binary reference (area fraction >= 0.5): Dice"  # each score named for its reference
    assert res.output.startswith(f"unet:drive_unet: {binary}") and "against the soft reference" in res.output
    assert "stored in the file" in res.output
    res = cli.invoke(seg_app, ["evaluate", "--data", str(drive64), "--segmenter", "ridge"])
    assert res.exit_code == 0 and res.output.startswith(f"ridge:meijering+otsu: {binary}"), res.output
    res = cli.invoke(seg_app, ["evaluate", "--data", str(drive64), "--segmenter", str(tmp_path / "missing.pth")])
    assert res.exit_code == 2 and "ablate segmenter train" in res.output
