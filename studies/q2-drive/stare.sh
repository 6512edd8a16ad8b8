#!/usr/bin/env bash
# The q2-drive study's trained arms on a second camera (issue 31): STARE's 16 photographs
# (TopCon TRV-50, 35° FOV, several with pathology; all 16 as test), prepared at the grid's 128 px,
# scored by the same 128 px U-Net, in the experiment's own eval/datasets/<stare...>/ (the DRIVE
# evaluation is left as it is); then the report (its STARE section asks Q2 again) and collect.py
# (controls on STARE too).
#
#   studies/q2-drive/stare.sh        # after run.sh; a few minutes on 2 cores
#
# Environment: STARE (default ../shared/data/stare beside the checkout), WORK, UNET, PYTHON as run.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
ABLATE=("$PYTHON" -m ablate.cli)
STARE=${STARE:-$ROOT/../shared/data/stare}
WORK=${WORK:-$ROOT/runs/q2-drive}
UNET=${UNET:-$WORK/vessel_unet-drive128.pth}
SIZE=128

[ -d "$STARE" ] || { echo "STARE folder not found: $STARE (set STARE=/path/to/stare)" >&2; exit 2; }
[ -f "$WORK/exp/grid.json" ] || { echo "$WORK/exp: no finished q2-drive grid; run studies/q2-drive/run.sh first" >&2; exit 2; }
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"
t0=$(date +%s)
stamp() { echo "[q2-drive/stare $(date +%H:%M:%S), $(( $(date +%s) - t0 )) s] $*"; }

stamp "1/4 prepare STARE at $SIZE px (its split.csv: all 16 test)"
[ -f "$WORK/stare$SIZE/manifest.json" ] || "${ABLATE[@]}" prepare "$STARE" --out "$WORK/stare$SIZE" --size $SIZE
stamp "2/4 evaluate the trained arms on STARE"
"${ABLATE[@]}" evaluate "$WORK/exp" --data "$WORK/stare$SIZE" --segmenter "$UNET"
stamp "3/4 report"
"${ABLATE[@]}" report "$WORK/exp"
stamp "4/4 collect"
"$PYTHON" "$HERE/collect.py" "$WORK/exp" "$HERE" --unet "$UNET" --data "$WORK/drive$SIZE"
stamp "done"
