#!/usr/bin/env bash
# The q2-drive study, from the raw DRIVE folder to this folder's tables and figures:
#
#   studies/q2-drive/run.sh                    # ~130 min on 2 cores (README.md here has the measured time)
#
# 1. prepare DRIVE at 128 px, 16 train / 4 val (photographs 37-40) / 20 test, from an index
#    written here                                  -> $WORK/drive-index.csv, $WORK/drive128
# 2. train the vessel U-Net at 128 px, unless present -> $WORK/vessel_unet-drive128.pth
# 3. launch the grid (grid.yaml: 4 arms x 5 seeds), which evaluates and reports
#                                                  -> $WORK/exp (checkpoints, TensorBoard, report/)
# 4. collect.py: report.md, the per-trial table, the training curves with the plateau
#    check, and the figures                        -> this folder
#
# Environment: DRIVE (the raw DRIVE folder; default ../shared/data/drive beside the checkout),
# WORK (default runs/q2-drive), UNET (default $WORK/vessel_unet-drive128.pth), PYTHON (default .venv/bin/python).
# Re-running continues an interrupted grid (--resume) and re-collects.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
ABLATE=("$PYTHON" -m ablate.cli)
DRIVE=${DRIVE:-$ROOT/../shared/data/drive}
WORK=${WORK:-$ROOT/runs/q2-drive}
UNET=${UNET:-$WORK/vessel_unet-drive128.pth}
SIZE=128

[ -d "$DRIVE" ] || { echo "DRIVE folder not found: $DRIVE (set DRIVE=/path/to/drive)" >&2; exit 2; }
[ -x "$PYTHON" ] || { echo "no Python at $PYTHON: run the README's setup command first, or set PYTHON" >&2; exit 2; }
mkdir -p "$WORK"
# This checkout's code, in this shell and in every Ray worker (also when the venv's install is another checkout's).
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"
t0=$(date +%s)
stamp() { echo "[q2-drive $(date +%H:%M:%S), $(( ($(date +%s) - t0) / 60 )) min] $*"; }

stamp "1/4 prepare DRIVE at $SIZE px"
# DRIVE's own split, except that its training photographs 37-40 are the validation set (declared in
# grid.yaml): DRIVE's default (a seeded 10 % of train, 2 photographs) is too few to decide a plateau.
"$PYTHON" - "$DRIVE" "$WORK/drive-index.csv" <<'PY'
import csv, sys
from pathlib import Path
drive, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
VAL = {"37_training", "38_training", "39_training", "40_training"}
with open(drive / "split.csv", newline="") as f:
    rows = list(csv.DictReader(f))
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["path", "split", "fov", "vessel"])
    for r in rows:
        stem, split = r["stem"], ("val" if r["stem"] in VAL else r["split"])
        w.writerow([drive / "images" / f"{stem}.tif", split, drive / "fov" / f"{stem}.gif", drive / "vessels" / f"{stem}.gif"])
PY
"${ABLATE[@]}" prepare --index "$WORK/drive-index.csv" --out "$WORK/drive$SIZE" --size $SIZE

if [ -f "$UNET" ]; then
  stamp "2/4 vessel U-Net present: $UNET (delete it to retrain)"
else
  # At the grid's own size (a U-Net judging images 2x off its training size is a caution in
  # the report). 64 px crops of the 128 px images, 1500 steps: measured in README.md here.
  stamp "2/4 train the vessel U-Net at $SIZE px"
  "${ABLATE[@]}" segmenter train --data "$WORK/drive$SIZE" --out "$UNET" --patch 64 --steps 1500 \
    --tb-dir "$WORK/segmenter-tensorboard"
fi

stamp "3/4 launch the grid (train, evaluate, report)"
resume=()
[ -f "$WORK/exp/grid.json" ] && resume=(--resume)
# Four trials at a time, one torch thread each, on 2 cores: each trial decodes its 16 training
# images once and serves later epochs from memory, so the CPU Ray Data keeps free would otherwise
# idle; and 20 trials in rounds of 4 leave no last round running alone.
"${ABLATE[@]}" launch --grid "$HERE/grid.yaml" --data "$WORK/drive$SIZE" --out "$WORK/exp" \
  --concurrent 4 --cpus-per-worker 0.24 --threads-per-worker 1 --segmenter "$UNET" "${resume[@]}"

stamp "4/4 collect the results into $HERE"
"$PYTHON" "$HERE/collect.py" "$WORK/exp" "$HERE" --unet "$UNET" --data "$WORK/drive$SIZE"
stamp "done in $(( ($(date +%s) - t0) / 60 )) min $(( ($(date +%s) - t0) % 60 )) s"
