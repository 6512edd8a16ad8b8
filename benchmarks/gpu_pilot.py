"""The 256 px pilot of the paper's question 2 on one GPU (issue 30).

`base` against the Meijering `edge` channel (studies/q2-drive-256-gpu/grid.yaml), 3 seeds
each, all six trials packed on the one GPU (`--gpus-per-worker` 1/6), trained for as many
steps as fit before `--deadline`, then evaluated with a 256 px U-Net trained beforehand on the
CPU and reported (`ablate launch --no-evaluate`, `ablate evaluate`, `ablate report`). The step count comes from what a step was measured
to cost on this GPU (benchmarks/gpu.py's packing figures, `--gpu-json`), so the pilot ends in
time; the YAML written for the run (steps and GAN start filled in) is kept beside its report.

    python benchmarks/gpu_pilot.py --gpu-json gpu.json --data DRIVE256 --segmenter unet256.pth \\
        --out EXP --deadline $(( $(date +%s) + 300 )) --bundle pilot.tar.gz

`--device cpu` runs the same on the CPU at a toy size (32 px, the `tiny` preset, a handful of
steps): a check of the script, never a result.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

GRID = Path(__file__).resolve().parents[1] / "studies" / "q2-drive-256-gpu" / "grid.yaml"
TRIALS = 6
# Seconds outside training: Ray and six trials starting, then evaluation and the report
# (20 test images x 6 trials on the GPU, morphology on the CPUs). Set from the CPU check
# and Ray's start-up on 2 cores, generous for 16 cores and a GPU.
OVERHEAD_S = {"cuda": 130.0, "cpu": 240.0}
# The probe times L1 + codebook only; the PatchGAN (both passes, from 30 % of the steps),
# the adaptive weight's extra gradient, Ray Data and validation cost more: a step is
# assumed to take 1 / SAFETY of the probe's.
SAFETY = 0.5
GAN_START = 0.3  # the PatchGAN joins after this share of the steps (the paper: 50 of 20,000 at most)


def rate_when_packed(packing: list[dict], k: int) -> float:
    """Images/s summed over k packed trials, interpolated linearly between measured packings
    (held at the nearest one outside them)."""
    pts = sorted((row["trials"], row["images_per_s"]) for row in packing)
    if k <= pts[0][0]:
        return pts[0][1]
    for (k0, r0), (k1, r1) in itertools.pairwise(pts):
        if k0 <= k <= k1:
            return r0 + (r1 - r0) * (k - k0) / (k1 - k0)
    return pts[-1][1]


def steps_that_fit(gpu: dict, train_s: float, batch: int, trials: int = TRIALS,
                   lo: int = 100, hi: int = 5000) -> tuple[int, str]:
    """(steps per trial, how they were found) for `trials` packed trials training `train_s` s."""
    packing = gpu.get("packing")
    if not packing:
        return lo, f"no packing figures in the GPU benchmark's output: {lo} steps, the least a pilot runs"
    per_trial = rate_when_packed(packing, trials) / trials
    steps = int(per_trial * SAFETY * train_s / batch)
    why = (f"{per_trial:.0f} images/s per trial with {trials} packed (interpolated from the measured packings), "
           f"x {SAFETY} for the PatchGAN and the pipeline, over {train_s:.0f} s at batch {batch}")
    return max(lo, min(hi, steps)), why


def pilot_grid(template: Path, steps: int, device: str) -> dict:
    """The study's grid with its step count, GAN start and intervals filled in."""
    grid = yaml.safe_load(template.read_text())
    train = grid["base"]["train"]
    train.update(steps=steps, val_every=max(10, steps // 4), checkpoint_every=max(10, steps // 2),
                 image_every=max(10, steps // 2), log_every=max(5, min(25, steps // 10)))
    grid["base"]["losses"]["adversarial"]["start_step"] = max(1, int(steps * GAN_START))
    if device == "cpu":  # the code check: a toy model and size, nothing to report
        grid["name"] += "_cpu_check"
        grid["base"]["model"] = {"preset": "tiny"}
        grid["base"]["data"]["size"] = 32
        train.update(batch_size=4, precision="fp32")
    return grid


def bundle(exp: Path, dest: Path) -> None:
    """The report, tables, TensorBoard logs and grid of the experiment, without checkpoints."""
    skip = {"train"}  # Ray Train's folder: the checkpoints (hundreds of MB), not needed to read the result
    with tarfile.open(dest, "w:gz") as tar:
        for p in sorted(exp.iterdir()):
            if p.name not in skip:
                tar.add(p, arcname=f"{exp.name}/{p.name}")
    print(f"bundled {exp} (without {', '.join(sorted(skip))}) into {dest} ({dest.stat().st_size / 2**20:.1f} MiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="DRIVE prepared at 256 px")
    ap.add_argument("--segmenter", required=True, help="the 256 px vessel U-Net file")
    ap.add_argument("--out", required=True, type=Path, help="experiment folder (must not exist)")
    ap.add_argument("--gpu-json", type=Path, default=None, help="benchmarks/gpu.py --json output of this GPU")
    ap.add_argument("--deadline", type=float, required=True, help="Unix time by which the pilot must have ended")
    ap.add_argument("--bundle", type=Path, default=None, help="write the experiment (no checkpoints) here as .tar.gz")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--steps", type=int, default=None, help="fix the step count instead of fitting it")
    args = ap.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out}: exists; the pilot writes a new experiment folder")
    gpu = json.loads(args.gpu_json.read_text()) if args.gpu_json and args.gpu_json.is_file() else {}
    train_s = args.deadline - time.time() - OVERHEAD_S[args.device]
    batch = yaml.safe_load(GRID.read_text())["base"]["train"]["batch_size"]
    if args.steps:
        steps, why = args.steps, "fixed by --steps"
    elif args.device == "cpu":
        steps, why = 20, "the CPU code check's fixed count"
    else:
        steps, why = steps_that_fit(gpu, train_s, batch)
    print(f"pilot: {steps} steps per trial ({why}); {train_s:.0f} s left for training", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid_file = args.out.parent / f"{args.out.name}.grid.yaml"
    grid_file.write_text(yaml.safe_dump(pilot_grid(GRID, steps, args.device), sort_keys=False))
    # Rounded down: Ray counts GPU shares in units of 1e-4, so six of 0.1667 need 1.0002 GPUs (refused).
    share = f"{math.floor(1e3 / TRIALS) / 1e3:g}"
    gpus = [] if args.device == "cpu" else ["--gpus-per-worker", share, "--cpus-per-worker", "2"]
    task_gpus = [] if args.device == "cpu" else ["--gpus-per-task", share]
    cli = [sys.executable, "-m", "ablate.cli"]
    # Train, then evaluate and report as separate commands: `ablate launch` refuses to start a
    # grid it would evaluate without the FID Inception (its wheel is too large to carry to the GPU
    # machine), while `ablate evaluate` computes every other metric and notes FID/KID as absent.
    steps_cmds = [
        [*cli, "launch", "--grid", str(grid_file), "--data", args.data, "--out", str(args.out),
         "--concurrent", str(TRIALS), "--no-evaluate", *gpus],
        [*cli, "evaluate", str(args.out), "--segmenter", args.segmenter, *task_gpus],
        [*cli, "report", str(args.out)],
    ]
    t0 = time.time()
    rc: int | str = 0
    for cmd in steps_cmds:
        print("$ " + " ".join(cmd), flush=True)
        # Until the deadline, less the time to bundle: what ran is bundled either way.
        try:
            rc = subprocess.run(cmd, timeout=max(30.0, args.deadline - time.time() - 10), check=False).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        if rc != 0:
            break
    wall = time.time() - t0
    (args.out.parent / f"{args.out.name}.pilot.json").write_text(json.dumps(
        {"steps": steps, "why": why, "rc": rc, "wall_s": wall, "train_s_planned": train_s, "commands": steps_cmds}, indent=1))
    print(f"pilot: ended ({rc}) after {wall:.0f} s", flush=True)
    if args.bundle and args.out.exists():
        (args.out / "pilot.json").write_text((args.out.parent / f"{args.out.name}.pilot.json").read_text())
        (args.out / "pilot_grid.yaml").write_text(grid_file.read_text())
        bundle(args.out, args.bundle)
    if rc != 0:
        raise SystemExit(f"pilot: a step ended with {rc}")


if __name__ == "__main__":
    main()
