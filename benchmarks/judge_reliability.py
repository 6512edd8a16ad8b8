"""The vessel judge's reliability on DRIVE and STARE: what the report's caution rule rests on (issue 31).

`ablate evaluate` records, on the originals it evaluates, the judge's Dice / AUC against manual
masks where there are some, and its agreement with the ridge map (the mean per-image Dice between
the two maps), with evaluate/judge_reliability.py. This runs the same functions on prepared DRIVE
and STARE test splits for each judge given, and prints (1) the pooled figures per (judge, data),
(2) how well the agreement with the ridge map follows the judge's Dice against the manual masks
image by image (Spearman over all images of a judge), and (3) each judge's per-image Dice range.

    .venv/bin/python benchmarks/judge_reliability.py \
        --data runs/q2-drive/drive128 --data runs/q2-drive/stare128 --data .gpu/drive256 --data /tmp/judge-stare256 \
        --judge runs/q2-drive/vessel_unet-drive128.pth --judge .gpu/unet256.pth --judge ridge

(/tmp/judge-stare256: `ablate prepare ../shared/data/stare --size 256 --out /tmp/judge-stare256`.) A U-Net
judges every size (it resamples to its own); a pair more than 2x apart is skipped, as evaluation
cautions against it (evaluate/plan.py MAX_JUDGE_RESAMPLING).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def measure(judge: str, data: str) -> dict | None:
    """The evaluation's record for one (judge, data), with per-image values beside it."""
    from ablate.data.shards import read_manifest
    from ablate.evaluate.judge_reliability import judge_chunk, judge_record
    from ablate.evaluate.plan import MAX_JUDGE_RESAMPLING
    from ablate.evaluate.reconstruct import reference_levels, to_tensor, vessel_maps
    from ablate.evaluate.splits import load_test_split
    from ablate.segmenter.scores import dice
    from ablate.segmenter.unet_file import load_segmenter

    seg = load_segmenter(judge)
    size = int(read_manifest(data)["image_size"])
    trained = getattr(seg, "size", None)
    if trained and max(trained / size, size / trained) > MAX_JUDGE_RESAMPLING:
        return None
    t = load_test_split(data, size)
    x = to_tensor(t["images"])
    maps = vessel_maps(seg, x, t["fov"], reference_levels(seg, x, t["fov"]))
    part = judge_chunk(seg, x, t["fov"], maps, t["labelled"])
    rec = judge_record(seg, size, [part], t["vessel"], t["fov"], t["labelled"])
    lab = t["labelled"]
    pred, ridge_pred = part["prob"] > seg.threshold, part["ridge_prob"] > 0.5
    fov, ves = t["fov"][lab], t["vessel"][lab]
    rec["per_image_dice"] = [dice(pred[i][fov[i]], ves[i][fov[i]]) for i in range(len(pred))]
    rec["per_image_ridge_dice"] = [dice(ridge_pred[i][fov[i]], ves[i][fov[i]]) for i in range(len(pred))]
    rec["per_image_agreement"] = part["agreement"]
    rec["data"] = data
    return rec


def main() -> None:
    import torch
    from scipy.stats import spearmanr

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", action="append", required=True, help="a prepared dataset with manual masks (repeat)")
    ap.add_argument("--judge", action="append", required=True, help="a U-Net file or 'ridge' (repeat)")
    ap.add_argument("--json", help="also write every record here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    recs = [r for j in args.judge for d in args.data if (r := measure(j, d)) is not None]
    print("| judge | data | px | masks | Dice | AUC | ridge Dice | Dice - ridge | agreement with ridge (mean, min) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in recs:
        agree = (f"{r['ridge_agreement']:.3f}, {r['ridge_agreement_min']:.3f}" if "ridge_agreement" in r
                 else "not measured (ridge itself)")
        print(f"| {r['segmenter']} | {Path(r['data']).name} | {r['image_size']} | {r['masks']} | {r['dice']:.3f} | "
              f"{r['auc']:.3f} | {r['ridge_dice']:.3f} | {r['dice'] - r['ridge_dice']:+.3f} | {agree} |")
    print("\nPer image, over every dataset a judge saw:")
    for judge in dict.fromkeys(r["segmenter"] for r in recs):
        mine = [r for r in recs if r["segmenter"] == judge]
        d = np.concatenate([r["per_image_dice"] for r in mine])
        line = f"- {judge}: {len(d)} images, Dice vs manual {d.min():.3f}-{d.max():.3f}"
        if mine[0]["per_image_agreement"] is not None:
            a = np.concatenate([r["per_image_agreement"] for r in mine])
            rho = spearmanr(a, d).statistic
            line += f"; agreement with ridge {a.min():.3f}-{a.max():.3f}, Spearman rho(agreement, Dice) {rho:.2f}"
        print(line)
    print(f"\n{time.time() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(recs, indent=1) + "\n")


if __name__ == "__main__":
    main()
