#!/usr/bin/env bash
# The tuned-drive study: tuned arms (grid.yaml, two stages) and the same arms untuned
# (grid-untuned.yaml), on the q2-drive study's DRIVE at 128 px, judged by its vessel U-Net.
#
#   studies/tuned-drive/run.sh          # needs studies/q2-drive/run.sh's $Q2/drive128 and its U-Net
#
# Environment: Q2 (default runs/q2-drive: drive128/ and vessel_unet-drive128.pth from q2-drive's
# run.sh), WORK (default runs/tuned-drive), PYTHON (default .venv/bin/python). Re-running resumes.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
Q2=${Q2:-$ROOT/runs/q2-drive}
WORK=${WORK:-$ROOT/runs/tuned-drive}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"
[ -d "$Q2/drive128" ] && [ -f "$Q2/vessel_unet-drive128.pth" ] || {
  echo "run studies/q2-drive/run.sh first: $Q2/drive128 and $Q2/vessel_unet-drive128.pth are needed" >&2; exit 2; }
t0=$(date +%s)
stamp() { echo "[tuned-drive $(date +%H:%M:%S), $(( ($(date +%s) - t0) / 60 )) min] $*"; }
launch() {  # grid file, experiment folder: a fresh launch, or --resume where one began
  local resume=(); [ -f "$2/grid.json" ] && resume=(--resume)
  "$PYTHON" -m ablate.cli launch --grid "$1" --data "$Q2/drive128" --out "$2" \
    --segmenter "$Q2/vessel_unet-drive128.pth" "${resume[@]}"
}
stamp "1/2 tuned arms: stage 1 (2 x 8 searches on train/val), stage 2 (2 x 3 seeds), evaluation, report"
launch "$HERE/grid.yaml" "$WORK/exp"
stamp "2/2 the same arms untuned (edge weight 1.0, lr as written), 2 x 3 seeds"
launch "$HERE/grid-untuned.yaml" "$WORK/untuned"
stamp "done: $WORK/exp/report/index.html and $WORK/untuned/report/index.html"
