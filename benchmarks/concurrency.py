"""Concurrency: a four-trial grid run two trials at a time against one at a time.

Same grid, same data, same machine, one after the other in this process; each
launch starts and stops its own Ray. On a 2-CPU machine a single trial's worker
holds 0.95 CPU (one CPU stays free for Ray Data), and with two at a time each
holds 0.45: what two concurrent trials gain is overlapping one trial's start-up
(process spawns, imports, first batch) with the other's training.

    .venv/bin/python benchmarks/concurrency.py --drive ../shared/data/drive
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
from _drive import add_args, prepared

GRID = """
name: concurrency
base:
  data: {{size: {size}, augment: {{hflip: true, rotate_deg: 10}}}}
  model: {{preset: {preset}}}
  train: {{steps: {steps}, batch_size: {batch}, lr: 1.0e-3, log_every: 10, image_every: {steps},
          val_every: {steps}, val_batches: 1, checkpoint_every: {steps}}}
  losses: {{codebook: {{weight: 1.0}}}}
combinations:
  l1: {{losses: {{l1: {{weight: 1.0}}}}}}
  l2: {{losses: {{l2: {{weight: 1.0}}}}}}
seeds: [0, 1]
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    add_args(ap)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()

    from ablate.pipeline import LaunchOptions, launch

    work, data = prepared(args, args.size, "concurrency")
    grid = work / "concurrency.yaml"
    grid.write_text(GRID.format(size=args.size, preset=args.preset, steps=args.steps, batch=args.batch))
    walls, tables = {}, {}
    for concurrent in (1, 2):
        out = work / f"c{concurrent}-{int(time.time())}"
        t0 = time.perf_counter()
        launch(LaunchOptions(grid=str(grid), data=str(data), out=str(out), evaluate=False, concurrent=concurrent))
        walls[concurrent] = time.perf_counter() - t0
        tables[concurrent] = pd.read_parquet(out / "results.parquet")
    print(f"\n4 trials of {args.preset} @ {args.size} px, {args.steps} steps, batch {args.batch}")
    for c, df in tables.items():
        assert (df["status"] == "done").all(), df[["trial", "status", "error"]]
        print(f"{c} at a time: grid wall {walls[c]:.1f} s (incl. Ray start/stop); per trial wall "
              f"{df['wall_time_s'].mean():.1f} s, start-up {df['startup_s'].mean():.1f} s, "
              f"torch threads {sorted(set(df['train/torch_threads']))}")
    print(f"speed-up of 2 at a time: {walls[1] / walls[2]:.2f}x")


if __name__ == "__main__":
    main()
