#!/usr/bin/env bash
# The q2-drive study, from the raw DRIVE folder to this folder's tables and figures:
#
#   studies/q2-drive/run.sh                    # ~90 min on 2 cores (README.md here has the measured time)
#
# 1. prepare DRIVE at 128 px                       -> $WORK/drive128
# 2. train the vessel U-Net at 128 px, unless present -> $ABLATE_CACHE/weights/vessel_unet-drive128.pth
# 3. launch the grid (grid.yaml: 3 arms x 5 seeds), which evaluates and reports
#                                                  -> $WORK/exp (checkpoints, TensorBoard, report/)
# 4. collect.py: report.md, the per-trial table, the training curves with the plateau
#    check, and the figures                        -> this folder
#
# Environment: DRIVE (the raw DRIVE folder; default ../shared/data/drive beside the checkout),
# WORK (default runs/q2-drive), ABLATE_CACHE (default ~/.cache/ablate), PYTHON (default .venv/bin/python).
# Re-running continues an interrupted grid (--resume) and re-collects.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
ABLATE=("$PYTHON" -m ablate.cli)
DRIVE=${DRIVE:-$ROOT/../shared/data/drive}
WORK=${WORK:-$ROOT/runs/q2-drive}
CACHE=${ABLATE_CACHE:-$HOME/.cache/ablate}
UNET=${UNET:-$CACHE/weights/vessel_unet-drive128.pth}
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
"${ABLATE[@]}" prepare "$DRIVE" --out "$WORK/drive$SIZE" --size $SIZE

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
# Three trials at a time, one torch thread each, on 2 cores: each trial decodes its 18 training
# images once and serves later epochs from memory, so the CPU Ray Data keeps free would otherwise
# idle; and 15 trials in rounds of 3 leave no last round running alone on one core.
"${ABLATE[@]}" launch --grid "$HERE/grid.yaml" --data "$WORK/drive$SIZE" --out "$WORK/exp" \
  --concurrent 3 --cpus-per-worker 0.3 --threads-per-worker 1 --segmenter "$UNET" "${resume[@]}"

stamp "4/4 collect the results into $HERE"
"$PYTHON" "$HERE/collect.py" "$WORK/exp" "$HERE" --unet "$UNET" --data "$WORK/drive$SIZE"
stamp "done in $(( ($(date +%s) - t0) / 60 )) min $(( ($(date +%s) - t0) % 60 )) s"
