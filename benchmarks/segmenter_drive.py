"""The vessel segmenter on DRIVE: train the U-Net (Ray Train) and score it beside the
classical fallback on the official 20-image test split, inside the field of view.

Prepares DRIVE at 512 px into --work (default: a temporary folder, never the
repository), trains with the settings below, and prints Dice (threshold 0.5) and
ROC AUC for `unet:<stem>` and `ridge:meijering+otsu` side by side, with wall times.

    nice -n 10 .venv/bin/python benchmarks/segmenter_drive.py                 # the reference run
    nice -n 10 .venv/bin/python benchmarks/segmenter_drive.py --steps 200     # a quick look
    .venv/bin/python benchmarks/segmenter_drive.py --skip-train --weights F   # score an existing file

The weights land in <work>/vessel_unet.pth unless --weights names a file
(e.g. ~/.cache/ablate/weights/vessel_unet.pth, where `load_segmenter` looks by default).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

DRIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "drive"
GOAL = {"dice": 0.78, "auc": 0.95}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--drive", type=Path, default=DRIVE, help="DRIVE folder (images/, vessels/, fov/, split.csv)")
    ap.add_argument("--work", type=Path, default=None, help="folder for the prepared data and outputs (default: temp)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--weights", type=Path, default=None, help="U-Net file to write (default: <work>/vessel_unet.pth)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--patches-per-image", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--base", type=int, default=16)
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--include-val", action="store_true", help="train on all 20 DRIVE training images (no val scores)")
    ap.add_argument("--skip-train", action="store_true", help="only score --weights and the fallback")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    from ablate.data.shards import prepare
    from ablate.runtime import RunOptions
    from ablate.segmenter.evaluation import evaluate_split
    from ablate.segmenter.scores import format_metrics
    from ablate.segmenter.train import train_segmenter
    from ablate.segmenter.unet_file import load_segmenter

    work = args.work or Path(tempfile.mkdtemp(prefix="segmenter-drive-"))
    data = work / f"drive{args.size}"
    t0 = time.time()
    prepare(args.drive, data, size=args.size)
    print(f"DRIVE prepared at {args.size} px in {data} ({time.time() - t0:.0f} s)")
    weights = (args.weights or work / "vessel_unet.pth").expanduser()

    train_wall = None
    if not args.skip_train:
        t0 = time.time()
        run = RunOptions(steps=args.steps, batch_size=args.batch_size, lr=args.lr)
        r = train_segmenter(data, weights, run, patch=args.patch, patches_per_image=args.patches_per_image,
                            include_val=args.include_val, arch={"base": args.base, "levels": args.levels})
        train_wall = time.time() - t0
        print(f"trained {weights} in {train_wall / 60:.1f} min (Ray start to file written); last: "
              + ", ".join(f"{k} {v:.4f}" for k, v in sorted(r.last.items()) if k.startswith(("seg/", "val/"))))

    rows = []
    for spec in (weights, "ridge"):
        seg = load_segmenter(spec)
        m = evaluate_split(seg, data, "test")
        rows.append(m)
        print(format_metrics(m) + f" [{m['predict_seconds']:.1f} s]")

    print(f"\nDRIVE test split, {args.size} px, inside the FOV (goal: Dice >= {GOAL['dice']}, AUC >= {GOAL['auc']})")
    print(f"{'segmenter':<24} {'Dice':>7} {'Dice/img':>8} {'AUC':>7} {'Se':>7} {'Sp':>7} {'Acc':>7} {'predict s':>9}")
    for m in rows:
        print(f"{m['segmenter']:<24} {m['dice']:>7.4f} {m['dice_mean_per_image']:>8.4f} {m['auc']:>7.4f} "
              f"{m['sensitivity']:>7.4f} {m['specificity']:>7.4f} {m['accuracy']:>7.4f} {m['predict_seconds']:>9.1f}")
    unet = rows[0]
    met = unet["dice"] >= GOAL["dice"] and unet["auc"] >= GOAL["auc"]
    settings = {"steps": args.steps, "batch_size": args.batch_size, "patch": args.patch, "lr": args.lr,
                "patches_per_image": args.patches_per_image, "base": args.base, "levels": args.levels,
                "include_val": args.include_val}
    print(f"U-Net goal {'MET' if met else 'NOT met'}; settings {settings}"
          + (f"; training wall time {train_wall / 60:.1f} min" if train_wall else ""))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "settings": settings, "train_wall_s": train_wall,
                                         "goal_met": met}, indent=1) + "\n")


if __name__ == "__main__":
    main()
