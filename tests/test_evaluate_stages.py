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
    from ablate.segmenter.model import load_segmenter

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
    assert {"psnr", "ssim", "vessel_sharpness", "dice", "cldice"} <= set(row)
    assert any(k.startswith("recon.") for k in row)
    assert all(np.isfinite(r["psnr"]) for r in res["rows"])


def test_morphology_stage_is_declared_cpu_only_beside_the_device_stage():
    src = inspect.getsource(evaluate_run.evaluate_experiment)
    assert "ray.remote(num_cpus=1, num_gpus=0)(morphology_stage)" in src
    assert "task(device_stage)" in src and "task = ray.remote(num_cpus=1, num_gpus=opts.gpus_per_task)" in src
