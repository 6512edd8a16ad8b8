"""Evaluation's two stages per (trial, chunk) (evaluate/trial_stages.py): the device stage's
output, frozen as Ray's object store hands it over (read-only arrays), gives the morphology
stage every per-image metric; the driver declares the morphology stage CPU-only, so it
overlaps the next chunk's GPU work."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import numpy as np

from ablate.evaluate import run as evaluate_run
from ablate.evaluate.trial_stages import device_stage, morphology_stage


def _freeze(x):
    if isinstance(x, np.ndarray):
        x = x.copy()
        x.setflags(write=False)
        return x
    if isinstance(x, dict):
        return {k: _freeze(v) for k, v in x.items()}
    return x


def test_device_then_morphology_stage_on_read_only_hand_over(drive32, tmp_path):
    import pyarrow.parquet as pq

    from ablate.data.preprocess import decode_png
    from ablate.data.shards import shard_paths
    from ablate.evaluate.reconstruct import reference_levels, to_tensor, vessel_maps
    from ablate.models.checkpoint import write_checkpoint
    from ablate.models.presets import build_model
    from ablate.segmenter.unet_file import load_segmenter

    rows = pq.read_table(shard_paths(drive32, "test")[0], columns=["image", "fov"]).to_pylist()[:3]
    images = np.stack([decode_png(r["image"]) for r in rows])
    fov = np.stack([decode_png(r["fov"]) > 127 for r in rows])
    spec = SimpleNamespace(model=SimpleNamespace(preset="tiny", overrides={}, edge_channel=None),
                           data=SimpleNamespace(size=32))
    model = build_model("tiny", 32, {})
    write_checkpoint(tmp_path, model_state=model.state_dict(), optimizer_state={}, step=1, spec=spec)
    seg = load_segmenter("ridge")
    levels = reference_levels(seg, to_tensor(images), fov)
    ref_maps = np.asarray(vessel_maps(seg, to_tensor(images), fov, levels))

    out = device_stage(str(tmp_path), images, fov, "ridge", {}, batch_size=2, ref_levels=levels)
    assert set(out) >= {"metrics", "maps", "green", "green_hat", "inception"}
    assert out["maps"].shape == fov.shape and out["inception"].shape[0] == 3
    frozen_fov, frozen_ref = _freeze(fov), _freeze(ref_maps)
    res = morphology_stage(_freeze(out), frozen_fov, frozen_ref)
    assert len(res["rows"]) == 3 and res["inception"].shape == out["inception"].shape
    row = res["rows"][0]
    assert {"psnr", "ssim", "border_width_error", "border_contrast_error", "dice", "cldice"} <= set(row)
    assert any(k.startswith("recon.") for k in row)
    assert all(np.isfinite(r["psnr"]) for r in res["rows"])
    # Without the FID Inception here (nets says so), neither stage computes or passes Inception features.
    bare = device_stage(str(tmp_path), images, fov, "ridge", {"inception": False}, batch_size=2, ref_levels=levels)
    assert "inception" not in bare and "inception" not in morphology_stage(bare, fov, ref_maps)


def test_morphology_stage_is_declared_cpu_only_beside_the_device_stage():
    src = inspect.getsource(evaluate_run.evaluate_experiment)
    assert "ray.remote(num_cpus=1, num_gpus=0)(morphology_stage)" in src
    assert "task(device_stage)" in src and "task = ray.remote(num_cpus=1, num_gpus=opts.gpus_per_task)" in src


def test_a_unet_judging_images_far_from_its_training_size_is_a_caution_in_the_report(tmp_path):
    """Seen on a real 64 px run: a 512 px U-Net marks blurred, vessel-free reconstructions as
    broad vessel blobs. Beyond 2x resampling the evaluation says so, and the report shows it."""
    import json

    from ablate.evaluate.plan import judge_scale_caution
    from ablate.report.collect import load_experiment
    from ablate.report.render import report_warnings
    from tests.helpers.experiments import make_exp

    unet = SimpleNamespace(name="unet:camera", size=512)
    assert judge_scale_caution(unet, 256) is None and judge_scale_caution(unet, 1024) is None  # within 2x
    caution = judge_scale_caution(unet, 64)
    assert "64 px" in caution and "trained at 512 px (8x resampled)" in caution and "--data" in caution
    assert judge_scale_caution(SimpleNamespace(name="ridge:meijering+otsu"), 64) is None  # no training size

    exp = make_exp(tmp_path / "exp", {"base": {}, "edge": {}}, seeds=(0, 1))
    notes = json.loads((exp / "eval" / "notes.json").read_text())
    (exp / "eval" / "notes.json").write_text(json.dumps({**notes, "cautions": [caution]}))
    warnings = report_warnings(load_experiment(exp))
    assert f"VESSEL JUDGE OUT OF RANGE: {caution}" in warnings
