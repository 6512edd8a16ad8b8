"""Data path: Ray Data read + decode throughput against what training consumes.

In a trial the Train worker holds all CPUs but one and Ray Data's tasks run in
the one left free (launch's placement rule), so the stream is measured here on
a Ray instance with one CPU. The stream reads DRIVE's train shards `--repeat`
times over (a union; 18 images are too few for a steady state). Consumption is the
training step of the same preset and size at the trial's batch size and thread
count, measured in this process; augmentation (in torch on the worker since the
decoded-image cache) is timed on its own and is part of that step.

    .venv/bin/python benchmarks/data_path.py --drive ../shared/data/drive
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _drive import add_args, prepared


def stream_rate(data: Path, size: int, repeat: int, batch: int) -> tuple[float, float, int]:
    """(images/s after the first batch, seconds to the first batch, images) of one pass."""
    import ray.data

    from ablate.data.shards import shard_paths
    from ablate.data.stream import Decode

    paths = shard_paths(str(data), "train")
    parts = [ray.data.read_parquet(paths, columns=["id", "image"]) for _ in range(repeat)]
    ds = parts[0].union(*parts[1:]) if repeat > 1 else parts[0]  # read_parquet drops repeated paths
    ds = ds.map_batches(Decode(size), batch_format="numpy", batch_size=16)
    t0 = time.perf_counter()
    first, n = None, 0
    for b in ds.iter_torch_batches(batch_size=batch, dtypes={"image": torch.uint8, "key": torch.int64}):
        if first is None:
            first = time.perf_counter()
        else:
            n += len(b["key"])
    return n / (time.perf_counter() - first), first - t0, n


def consumption(preset: str, size: int, batch: int, threads: int, repeats: int = 3) -> tuple[float, float]:
    """(training images/s, augmentation's share of a step)."""
    from ablate.data.augment import augment_batch
    from ablate.losses import CompositeLoss, LossSpec
    from ablate.models.presets import build_model
    from ablate.specs import AugmentSpec

    torch.set_num_threads(threads)
    model = build_model(preset, size)
    loss_fn = CompositeLoss.from_specs([LossSpec("l1"), LossSpec("codebook")])
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    u8 = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    steps, augs = [], []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        x = augment_batch(u8.float() / 255, AugmentSpec(), seed=0, rank=0, step=i)
        t1 = time.perf_counter()
        x_hat, aux = model(x)
        loss, _ = loss_fn(x, x_hat, aux, i, model.last_layer)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:  # the first step warms the allocator
            steps.append(time.perf_counter() - t0)
            augs.append(t1 - t0)
    step = statistics.median(steps)
    return batch / step, statistics.median(augs) / step


def main() -> None:
    ap = argparse.ArgumentParser()
    add_args(ap)
    ap.add_argument("--preset", default="paper256")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="the trial worker's torch threads (1 on 2 CPUs)")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()

    import ray


    _work, data = prepared(args, args.size, "datapath")
    ray.init(num_cpus=1, include_dashboard=False, _temp_dir=str(Path(tempfile.gettempdir()) / "ablate-bench-ray"),
             log_to_driver=False)
    try:
        stream_rate(data, args.size, 1, args.batch)  # warm: worker processes, imports
        rate, first, n = stream_rate(data, args.size, args.repeat, args.batch)
    finally:
        ray.shutdown()
    train_rate, aug_share = consumption(args.preset, args.size, args.batch, args.threads)
    print(f"\nRay Data, 1 CPU: read + decode {n} images at {args.size} px: {rate:.1f} img/s "
          f"(first batch after {first:.1f} s)")
    print(f"training {args.preset} @ {args.size}, batch {args.batch}, {args.threads} thread(s): {train_rate:.2f} img/s; "
          f"augmentation (torch, on the worker) is {aug_share:.1%} of the step")
    print(f"stream / consumption: {rate / train_rate:.1f}x")


if __name__ == "__main__":
    main()
