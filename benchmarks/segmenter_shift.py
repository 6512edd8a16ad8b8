"""Does the vessel judge travel to another camera? The U-Net's Dice on DRIVE's test split
under simulated camera shifts (`ablate.segmenter.camera.SHIFTS`: gamma 0.6 and 1.6,
contrast x0.6, Gaussian blur sigma 1.5 px, half resolution and back, hue +-0.05 turn),
each applied to every test image inside its FOV, then scored at the file's own
threshold against the unchanged manual masks. The ridge fallback is scored beside it
for reference (its per-image Otsu level adapts to each image).

Goal (issue #14): unshifted Dice >= 0.80, and Dice under each shift within 0.05 of it.

    .venv/bin/python benchmarks/segmenter_drive.py --work W --weights W/unet.pth   # train it first
    .venv/bin/python benchmarks/segmenter_shift.py --weights W/unet.pth --work W    # then shift it

Prepares DRIVE at --size into <work>/drive<size> unless it is there already (the
layout segmenter_drive.py uses), so the second command reuses the first one's data.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

DRIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "drive"
GOAL_DICE, GOAL_DROP = 0.80, 0.05


def shifted(images: np.ndarray, fov: np.ndarray, shift) -> np.ndarray:
    """uint8 (N, H, W, 3) images after `shift`, back to 8 bits as a camera would store them."""
    out = np.empty_like(images)
    for i in range(images.shape[0]):
        x = shift(images[i].astype(np.float32) / 255, fov[i])
        out[i] = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, required=True, help="U-Net file (ablate segmenter train)")
    ap.add_argument("--drive", type=Path, default=DRIVE)
    ap.add_argument("--work", type=Path, default=None, help="folder for the prepared data (default: temp)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--no-ridge", action="store_true", help="skip the ridge fallback's reference column")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from ablate.data.shards import prepare
    from ablate.segmenter.camera import SHIFTS
    from ablate.segmenter.evaluation import predict_arrays
    from ablate.segmenter.labelled import load_labelled
    from ablate.segmenter.scores import evaluate_arrays
    from ablate.segmenter.unet_file import load_segmenter

    work = args.work or Path(tempfile.mkdtemp(prefix="segmenter-shift-"))
    data = work / f"drive{args.size}"
    if not (data / "manifest.json").is_file():
        prepare(args.drive, data, size=args.size)
    lab = load_labelled(data, "test")
    unet = load_segmenter(args.weights)
    segs = [unet] + ([] if args.no_ridge else [load_segmenter("ridge")])
    print(f"{unet.name}: threshold {unet.threshold:.2f} ({unet.meta.get('threshold_rule', 'not recorded')}); "
          f"trained on {unet.meta.get('trained_on', '?')}")
    rows = []
    for name, shift in SHIFTS.items():
        t0 = time.perf_counter()
        imgs = shifted(lab.images, lab.fov, shift)
        row = {"shift": name}
        for seg in segs:
            m = evaluate_arrays(predict_arrays(seg, imgs, lab.fov), lab.vessel, lab.fov, seg.threshold)
            key = "unet" if seg is unet else "ridge"
            row.update({f"{key}_{k}": m[k] for k in ("dice", "auc", "sensitivity", "specificity")})
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(f"  {name:<16} U-Net Dice {row['unet_dice']:.4f}" + (
            f", ridge {row['ridge_dice']:.4f}" if "ridge_dice" in row else "") + f" [{row['seconds']} s]", flush=True)

    base = rows[0]["unet_dice"]
    print(f"\nDRIVE test split ({len(lab.sources)} images), {args.size} px, inside the FOV; "
          f"{unet.name} at threshold {unet.threshold:.2f}")
    head = "| shift | U-Net Dice | change | AUC | Se | Sp |" + (" ridge Dice |" if len(segs) > 1 else "")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    worst = 0.0
    for r in rows:
        d = r["unet_dice"] - base
        worst = max(worst, abs(d))
        print(f"| {r['shift']} | {r['unet_dice']:.4f} | {d:+.4f} | {r['unet_auc']:.4f} | {r['unet_sensitivity']:.4f} "
              f"| {r['unet_specificity']:.4f} |" + (f" {r['ridge_dice']:.4f} |" if "ridge_dice" in r else ""))
    ok = base >= GOAL_DICE and worst <= GOAL_DROP
    print(f"\ngoal (unshifted Dice >= {GOAL_DICE}, every shift within {GOAL_DROP}): {'MET' if ok else 'NOT met'} "
          f"(unshifted {base:.4f}, largest change {worst:.4f})")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "threshold": unet.threshold, "weights": str(args.weights),
                                         "size": args.size, "goal_met": ok}, indent=1) + "\n")


if __name__ == "__main__":
    main()
