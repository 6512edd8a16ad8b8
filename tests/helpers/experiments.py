"""A hand-made experiment folder (results.parquet, grid.json, eval/per_image.parquet) for
the report, inference and storage tests: synthetic numbers, no training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

SEG = "ridge:meijering+otsu"


def make_exp(root: Path, combos: dict[str, dict], seeds=(0,), n_images=12, value=None, evaluated=True,
             name="synthetic", segmenter=SEG) -> Path:
    """An experiment folder with results.parquet, grid.json and (optionally) eval/per_image.parquet.
    combos: {combination: extra config.* columns}; value(comb, seed, image_index) -> {metric: v}."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    value = value or (lambda c, s, i: {})
    results, per_image, grid_trials = [], [], {}
    base_cfg = {"config.model.preset": "tiny", "config.data.size": 32, "config.train.lr": 1e-3,
                "config.train.steps": 10, "config.loss.l1.weight": 1.0, "config.loss.codebook.weight": 1.0,
                "config.model.edge_channel": None}
    for c, cfg in combos.items():
        for s in seeds:
            trial = f"{c}-s{s}-x_{len(results):05d}"
            row = {"trial": trial, "trial_id": f"x_{len(results):05d}", "combination": c, "seed": s,
                   "status": "done", "error": None, **base_cfg, **cfg, "steps": 10, "checkpoint": None,
                   "wall_time_s": 1.0, "val/psnr": 10 + rng.normal(), "val/loss/total": 1 + rng.random()}
            grid_trials[f"{c}-s{s}"] = {"combination": c, "seed": s}
            rows = []
            for i in range(n_images):
                v = {"psnr": 20 + np.sin(i) + 0.01 * rng.normal(), "ssim": 0.5 + 0.01 * np.cos(i),
                     "dice": 0.7 + 0.01 * np.sin(3 * i), "cldice": 0.6 + 0.01 * np.cos(2 * i),
                     "betti0_error": float(i % 3), "delta_average_width": 0.1 * np.sin(5 * i),
                     "border_width_error": 0.8 + 0.01 * np.sin(2 * i)}
                v.update(value(c, s, i))
                rows.append({"trial": trial, "combination": c, "seed": s, "image_id": f"img{i:02d}", "segmenter": segmenter,
                             "orig.average_width": 2.0, "recon.average_width": 2.0 + v["delta_average_width"], **v})
            per_image += rows
            row.update({f"test/{k}": float(np.mean([r[k] for r in rows])) for k in rows[0] if k in
                        ("psnr", "ssim", "dice", "cldice", "betti0_error", "delta_average_width")})
            row["test/fid"] = 100 + rng.normal()
            results.append(row)
    pd.DataFrame(results).to_parquet(root / "results.parquet", index=False)
    (root / "grid.json").write_text(json.dumps({"name": name, "data": None, "trials": grid_trials}))
    if evaluated:
        (root / "eval").mkdir(exist_ok=True)
        pd.DataFrame(per_image).to_parquet(root / "eval" / "per_image.parquet", index=False)
        (root / "eval" / "notes.json").write_text(json.dumps({"segmenter": "segmenter 'ridge' as requested",
                                                               "skipped": ["LPIPS not computed: test"]}))
    return root


LPIPS = {"config.loss.lpips.weight": 0.5, "config.loss.lpips.options.pretrained": False}
FM = {"config.loss.foundation.weight": 0.5, "config.loss.foundation.options.model": "fundus_mae"}
EDGE = {"config.model.edge_channel.family": "meijering", "config.model.edge_channel.channel": "green"}
