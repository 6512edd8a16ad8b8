#!/usr/bin/env bash
# The synthesis-drive study (issue 28): 2 arms x 3 seeds through `ablate launch` with a prior:
# block, then evaluation of reconstructions AND samples, then the report.
#
#   studies/synthesis-drive/run.sh
#
# Reuses the q2-drive study's prepared DRIVE (128 px shards, 16 train / 4 val = photographs
# 37-40 / 20 test; trials read them at 64 px) and its vessel U-Net (trained at 128 px: the
# report carries the judge-scale caution): run studies/q2-drive/run.sh first, or set DATA/UNET.
# Environment: DATA (default runs/q2-drive/drive128), UNET (default runs/q2-drive/vessel_unet-drive128.pth),
# WORK (default runs/synthesis-drive), PYTHON (default .venv/bin/python). Re-running continues (--resume).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
ABLATE=("$PYTHON" -m ablate.cli)
DATA=${DATA:-$ROOT/runs/q2-drive/drive128}
UNET=${UNET:-$ROOT/runs/q2-drive/vessel_unet-drive128.pth}
WORK=${WORK:-$ROOT/runs/synthesis-drive}

[ -f "$DATA/manifest.json" ] || { echo "no prepared DRIVE at $DATA: run studies/q2-drive/run.sh (step 1) or set DATA" >&2; exit 2; }
[ -f "$UNET" ] || { echo "no vessel U-Net at $UNET: run studies/q2-drive/run.sh (step 2) or set UNET" >&2; exit 2; }
mkdir -p "$WORK"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code, here and in every Ray worker
cd "$ROOT"
t0=$(date +%s)
stamp() { echo "[synthesis-drive $(date +%H:%M:%S), $(( ($(date +%s) - t0) / 60 )) min] $*"; }

resume=()  # a finished grid: --resume keeps every trial and trains nothing
[ -f "$WORK/exp/grid.json" ] && resume=(--resume)
stamp "1/3 launch (train autoencoders, priors, samples)"
"${ABLATE[@]}" launch --grid "$HERE/grid.yaml" --data "$DATA" --out "$WORK/exp" --no-evaluate "${resume[@]}"
stamp "2/3 evaluate (reconstructions and samples)"
"${ABLATE[@]}" evaluate "$WORK/exp" --segmenter "$UNET"
stamp "3/3 report"
# The questions as declared in grid.yaml, into grid.json (a --resume keeps the record it finds; the
# q2s line was a comment when the grid first ran, README.md): read with the loader, written by
# the launch's own record writer, so the record stays one `ablate launch` would accept.
"$PYTHON" - "$HERE/grid.yaml" "$WORK/exp" <<'PY'
import sys
from ablate.config import load_grid
from ablate.train.experiment import read_record, write_record
record = read_record(sys.argv[2])
record["questions"] = load_grid(sys.argv[1]).questions
write_record(sys.argv[2], record)
PY
"${ABLATE[@]}" report "$WORK/exp"
stamp "done: $WORK/exp/report/index.html"
