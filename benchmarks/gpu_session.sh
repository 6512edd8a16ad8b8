#!/usr/bin/env bash
# Issue 30's one call on a lent GPU machine: benchmarks/gpu.py, then the 256 px pilot of
# question 2 (benchmarks/gpu_pilot.py), ending by SESSION_S seconds after it starts.
#
# What it expects in the repository root (made on the CPU machine beforehand, ignored by git
# and carried with the call):
#   .whl/          wheels the GPU machine lacks (Ray trimmed by benchmarks/gpu_carry.py, pydantic,
#                  jsonschema, lpips...), installed with --no-deps into /tmp/site
#   .gpu/drive256  DRIVE prepared at 256 px (`ablate prepare ../shared/data/drive --size 256`)
#   .gpu/unet256.pth  the 256 px vessel U-Net (`ablate segmenter train --data .gpu/drive256`)
# Everything it writes for the caller goes under $OUT: session.log, gpu.json, pilot.tar.gz.
# A rerun of part of it: GPU_SECTIONS=ray (gpu.py's sections), STEP_COST_JSON=an earlier gpu.json
# (the packing figures the pilot sizes its steps by), SESSION_S=the seconds the call may take.
set -u
T0=$(date +%s)
SESSION_S=${SESSION_S:-580}
GPU_BUDGET_S=${GPU_BUDGET_S:-300}
OUT=${OUT:-/tmp/gpu-session-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1
export PYTHONUNBUFFERED=1

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "session: installing the carried wheels failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
echo "session: wheels in $(( $(date +%s) - T0 )) s"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
python3 -c "import sys, torch, ray, ablate; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'ray', ray.__version__)"

echo "session: benchmarks/gpu.py (budget ${GPU_BUDGET_S} s) at +$(( $(date +%s) - T0 )) s"
python3 -c "import ray.dashboard.optional_deps" && echo "session: Ray's dashboard dependencies import" \
  || echo "session: Ray's dashboard dependencies do NOT import (Ray Train needs the dashboard)"
timeout $(( GPU_BUDGET_S + 90 )) python3 benchmarks/gpu.py --json "$OUT/gpu.json" --work /tmp/gpu-bench \
  --budget-s "$GPU_BUDGET_S" --mfu-steps 8 --compile-batches 32 --pack-seconds 6 --pack-setup-s 18 --ray-steps 150 \
  --sections "${GPU_SECTIONS:-mfu,packing,projection,ray}"
echo "session: gpu.py ended ($?) at +$(( $(date +%s) - T0 )) s"

echo "session: pilot at +$(( $(date +%s) - T0 )) s"
python3 benchmarks/gpu_pilot.py --gpu-json "${STEP_COST_JSON:-$OUT/gpu.json}" --data .gpu/drive256 --segmenter .gpu/unet256.pth \
  --out /tmp/pilot/q2_drive_256_gpu --deadline $(( T0 + SESSION_S )) --bundle "$OUT/pilot.tar.gz"
echo "session: pilot ended ($?) at +$(( $(date +%s) - T0 )) s"
nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu,power.draw --format=csv
echo "session: whole call $(( $(date +%s) - T0 )) s"
