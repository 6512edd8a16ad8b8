"""Ray overhead: a trial under `ablate launch` against a bare PyTorch loop.

Both train the same model with the same loss, optimiser, augmentation, batch
size and torch thread count on the same decoded DRIVE images; the bare loop
holds them in memory in this process. Under Ray the trial runs the real path
(Tune driver -> TorchTrainer -> one Train worker fed by Ray Data), once with
the worker's decoded-image cache (the default) and once streaming every epoch
(`data.cache_mb: 0`, the behaviour before the cache), both in one grid.

Figures printed:
- steady-state images/s (median of the logged intervals after the first) and
  its ratio to the bare loop (benchmark 1);
- start-up per trial, split into phases, and each trial's wall time against the
  time its steps took (benchmark 2).

    .venv/bin/python benchmarks/ray_overhead.py --drive ../shared/data/drive
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from _drive import add_args, prepared

GRID = """
name: overhead
base:
  data: {{size: {size}, augment: {{hflip: true, rotate_deg: 10}}}}
  model: {{preset: {preset}}}
  train: {{steps: {steps}, batch_size: {batch}, lr: 1.0e-3, log_every: {log_every}, image_every: {steps},
          val_every: {steps}, val_batches: 1, checkpoint_every: {steps}}}
  losses: {{l1: {{weight: 1.0}}, codebook: {{weight: 1.0}}}}
combinations:
  cached: {{}}
  streamed: {{data: {{cache_mb: 0}}}}
seeds: [0]
"""


def decoded_split(data_dir: Path, split: str, size: int) -> torch.Tensor:
    from ablate.data.shards import shard_paths
    from ablate.data.stream import Decode

    table = pq.read_table(shard_paths(str(data_dir), split), columns=["id", "image"])
    out = Decode(size)({"id": table["id"].to_numpy(zero_copy_only=False),
                        "image": table["image"].to_numpy(zero_copy_only=False)})
    return torch.from_numpy(out["image"])


def bare_loop(spec, images: torch.Tensor, threads: int) -> list[float]:
    """images/s per logging interval of the same training, no Ray."""
    from ablate.data.augment import augment_batch
    from ablate.losses import CompositeLoss
    from ablate.models.edge_channel import input_and_target
    from ablate.models.presets import build_for_spec

    torch.set_num_threads(threads)
    t = spec.train
    torch.manual_seed(spec.seed)
    model, edge = build_for_spec(spec)
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format  # as the trial's worker does
    model = model.to(memory_format=fmt)
    loss_fn = CompositeLoss.from_specs(spec.losses)
    opt = torch.optim.Adam(model.parameters(), lr=t.lr, betas=t.betas)
    rates, step, seen, tic = [], 0, 0, time.perf_counter()
    g = torch.Generator().manual_seed(0)
    while step < t.steps:
        order = torch.randperm(len(images), generator=g)
        for s in range(0, len(order), t.batch_size):
            x = augment_batch(images[order[s:s + t.batch_size]].float() / 255, spec.data.augment, seed=spec.seed,
                              rank=0, step=step)
            x_in, x = (v.contiguous(memory_format=fmt) for v in input_and_target(edge, x))
            x_hat, aux = model(x_in)
            loss, logs = loss_fn(x, x_hat, aux, step, model.last_layer)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += x.shape[0]
            if step % t.log_every == 0:
                torch.stack([v.detach().float().reshape(()) for v in logs.values()]).tolist()  # same host sync
                rates.append(seen / (time.perf_counter() - tic))
                seen, tic = 0, time.perf_counter()
            if step >= t.steps:
                break
    return rates


def logged_rates(tb_dir: Path) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.value for e in acc.Scalars("perf/images_per_s")]


def main() -> None:
    ap = argparse.ArgumentParser()
    add_args(ap)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--threads-per-worker", type=int, default=None, help="passed to launch (default: its rule)")
    args = ap.parse_args()

    from ablate.config import load_grid
    from ablate.pipeline import LaunchOptions, launch

    work, data = prepared(args, args.size, "overhead")
    grid_file = work / "overhead.yaml"
    grid_file.write_text(GRID.format(size=args.size, preset=args.preset, steps=args.steps, batch=args.batch,
                                     log_every=args.log_every))
    spec = next(s for s in load_grid(grid_file).trials if s.combination == "cached")

    out = work / f"exp-{int(time.time())}"
    t0 = time.perf_counter()
    launch(LaunchOptions(grid=str(grid_file), data=str(data), out=str(out), evaluate=False, concurrent=1,
                         threads_per_worker=args.threads_per_worker))
    grid_wall = time.perf_counter() - t0
    df = pd.read_parquet(out / "results.parquet")
    threads = int(df["train/torch_threads"].iloc[0])  # what the trial's worker used
    images = decoded_split(data, "train", args.size)
    bare = bare_loop(spec, images, threads)
    bare_rate = statistics.median(bare[1:])

    print(f"\n{args.preset} @ {args.size} px, batch {args.batch}, {args.steps} steps, {len(images)} train images, "
          f"{threads} torch thread(s), torch {torch.__version__}")
    print(f"bare PyTorch loop: {bare_rate:.2f} img/s (median of {len(bare) - 1} intervals of {args.log_every} steps)")
    step_time_sum = 0.0
    for _, row in df.iterrows():
        rates = logged_rates(out / "tensorboard" / row["trial"])
        steady = statistics.median(rates[1:])
        steps_s = row["time/in_steps_s"]  # host time inside training steps, measured by the worker
        step_time_sum += steps_s
        phases = {k.removeprefix("time/startup/").removesuffix("_s"): v for k, v in row.items()
                  if str(k).startswith("time/startup/") and np.isfinite(v)}
        print(f"\n[{row['combination']}] train passes streamed from Ray Data: {row['data/train_passes_streamed']}, "
              f"val passes: {row['data/val_passes_streamed']}")
        print(f"  steady state under Ray: {steady:.2f} img/s -> {steady / bare_rate:.3f} of the bare loop")
        print(f"  start-up (trial start -> first step): {row['startup_s']:.1f} s; phases (s after trial start): "
              + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()))
        print(f"  trial wall {row['wall_time_s']:.1f} s vs time inside its training steps {steps_s:.1f} s "
              f"({steps_s / row['wall_time_s']:.0%})")
    print(f"\ngrid (2 trials, one at a time) wall {grid_wall:.1f} s incl. Ray start/stop; "
          f"sum of its steps' time {step_time_sum:.1f} s ({step_time_sum / grid_wall:.0%})")


if __name__ == "__main__":
    main()
