"""Sampling the code prior with and without the KV cache, side by side in one process.

Draws grids of 256 codes (a 16x16 latent) on the CPU both ways: with the cache each step
feeds one new token; without it each step recomputes the whole prefix (the reference path
of CodePrior.sample). The two are interleaved over the repeats so drift in machine load
hits both alike; the figure is the median per path. Both draw the same codes (same seed),
which the script checks. Weights are random: the cost of a step does not depend on them.

    .venv/bin/python benchmarks/prior_sampling.py            # small and wide configs
    .venv/bin/python benchmarks/prior_sampling.py --quick    # small config only
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ablate.models.code_prior import CodePrior, CodePriorConfig

CONFIGS = {
    "small": CodePriorConfig(vocab=512, n_positions=256, layers=4, heads=4, width=128, pkeep=1.0),
    "wide": CodePriorConfig(vocab=512, n_positions=256, layers=8, heads=8, width=256, pkeep=1.0),
}


def time_one(model: CodePrior, samples: int, use_cache: bool) -> tuple[float, float, torch.Tensor]:
    """(wall seconds, process CPU seconds, codes) of one sample call."""
    w0, c0 = time.perf_counter(), time.process_time()
    codes = model.sample(samples, generator=torch.Generator().manual_seed(0), use_cache=use_cache)
    return time.perf_counter() - w0, time.process_time() - c0, codes


def run(name: str, samples: int, repeats: int) -> None:
    torch.manual_seed(0)
    config = CONFIGS[name]
    model = CodePrior(config).eval()
    params = sum(p.numel() for p in model.parameters())
    time_one(model, samples, True)  # warm-up: allocator, first-call kernels
    wall: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats):
        drawn = {}
        for use_cache in (True, False):
            w, c, drawn[use_cache] = time_one(model, samples, use_cache)
            wall[use_cache].append(w)
            cpu[use_cache].append(c)
        if not torch.equal(drawn[True], drawn[False]):
            raise SystemExit(f"{name}: the cached and uncached paths drew different codes")
    tokens = samples * config.n_positions
    print(f"\n{name}: {config.layers} layers, {config.heads} heads, width {config.width}, vocab {config.vocab}, "
          f"{config.n_positions} tokens, {params / 1e6:.2f} M parameters; {samples} grids per call, "
          f"median of {repeats}, {torch.get_num_threads()} threads")
    print(f"{'path':<22} {'s/call':>8} {'tokens/s':>10} {'CPU s/call':>11}")
    for use_cache, label in ((True, "KV cache"), (False, "recompute prefix")):
        w, c = statistics.median(wall[use_cache]), statistics.median(cpu[use_cache])
        print(f"{label:<22} {w:>8.3f} {tokens / w:>10.1f} {c:>11.3f}")
    ratio_wall = statistics.median(wall[False]) / statistics.median(wall[True])
    ratio_cpu = statistics.median(cpu[False]) / statistics.median(cpu[True])
    print(f"speed-up with the cache: {ratio_wall:.1f}x wall, {ratio_cpu:.1f}x CPU time (codes identical)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small config only")
    ap.add_argument("--samples", type=int, default=2, help="grids drawn per call")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, device cpu")
    run("small", args.samples, args.repeats)
    if not args.quick:
        run("wide", args.samples, args.repeats)


if __name__ == "__main__":
    main()
