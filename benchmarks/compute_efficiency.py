"""Model FLOP utilisation of one training step, against this machine's matmul rate.

FLOPs of one step (autoencoder forward, L1 + codebook loss, backward) are counted
by torch's FlopCounterMode (convolutions and matmuls, which is where the work is;
the Adam update and elementwise ops are left out, so the fraction is a slight
underestimate). Achieved FLOP/s = FLOPs/step x steps/s. The reference is a large
square matmul measured in the same run, same threads and dtype: what this
machine's BLAS delivers, not a datasheet peak.

Levers are timed one at a time in this process, interleaved round-robin so load
drift hits all alike: torch intra-op threads, channels_last, torch.compile.

    .venv/bin/python benchmarks/compute_efficiency.py                        # paper256 @ 256, CPU
    .venv/bin/python benchmarks/compute_efficiency.py --device cuda --amp bf16 --batch 32
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ablate.losses import CompositeLoss, LossSpec
from ablate.models.presets import build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_flops_per_s(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


class Step:
    """One training step of the trial's model and base loss, with a lever's settings."""

    def __init__(self, preset: str, size: int, batch: int, device: torch.device, *, amp: str = "none",
                 channels_last: bool = False, compile: bool = False):
        torch.manual_seed(0)
        self.device, self.amp = device, amp
        self.model = build_model(preset, size).to(device)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=fmt)
        self.forward = torch.compile(self.model) if compile else self.model
        self.loss_fn = CompositeLoss.from_specs([LossSpec("l1"), LossSpec("codebook")]).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.x = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=fmt)

    def _autocast(self):
        if self.amp == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def __call__(self, update: bool = True) -> None:
        with self._autocast():
            x_hat, aux = self.forward(self.x)
            loss, _ = self.loss_fn(self.x, x_hat.float(), aux, 0, None)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if update:
            self.opt.step()
        _sync(self.device)


def count_flops(step: Step) -> int:
    with FlopCounterMode(display=False) as counter:
        step(update=False)
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="paper256")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=4, help="timed steps per variant (median)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", choices=["none", "bf16"], default="none")
    ap.add_argument("--threads", type=int, nargs="*", default=None, help="CPU thread counts to compare")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile lever")
    args = ap.parse_args()
    device = torch.device(args.device)
    threads = args.threads or sorted({1, torch.get_num_threads()})
    dtype = torch.bfloat16 if args.amp == "bf16" else torch.float32

    variants: dict[str, tuple[Step, int]] = {}
    for t in threads if device.type == "cpu" else [torch.get_num_threads()]:
        variants[f"eager, {t} thread(s)"] = (Step(args.preset, args.size, args.batch, device, amp=args.amp), t)
    top = max(threads) if device.type == "cpu" else torch.get_num_threads()
    variants["channels_last"] = (Step(args.preset, args.size, args.batch, device, amp=args.amp, channels_last=True), top)
    if not args.no_compile:
        variants["torch.compile"] = (Step(args.preset, args.size, args.batch, device, amp=args.amp, compile=True), top)

    flops = count_flops(next(iter(variants.values()))[0])
    for name, (step, t) in variants.items():  # warm-up (and compilation) outside the timing
        torch.set_num_threads(t)
        t0 = time.perf_counter()
        step()
        step()
        print(f"warm-up {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    times: dict[str, list[float]] = {n: [] for n in variants}
    for _ in range(args.repeats):
        for name, (step, t) in variants.items():
            torch.set_num_threads(t)
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    peak = {}
    for t in sorted({t for _, t in variants.values()}):
        torch.set_num_threads(t)
        peak[t] = matmul_flops_per_s(device, dtype)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"\n{args.preset} @ {args.size} px, batch {args.batch}, {name}, amp {args.amp}, torch {torch.__version__}")
    print(f"FLOPs per training step (forward + backward, counted): {flops / 1e9:.2f} GFLOP")
    for t, p in peak.items():
        print(f"matmul 2048^2 {str(dtype).removeprefix('torch.')}, {t} thread(s): {p / 1e9:.1f} GFLOP/s")
    base = statistics.median(times[next(iter(times))])
    print(f"{'variant':<24} {'s/step':>8} {'img/s':>8} {'GFLOP/s':>9} {'of matmul':>10} {'speed vs first':>15}")
    for n, ts in times.items():
        m = statistics.median(ts)
        achieved = flops / m
        print(f"{n:<24} {m:>8.3f} {args.batch / m:>8.2f} {achieved / 1e9:>9.1f} "
              f"{achieved / peak[variants[n][1]]:>10.1%} {base / m:>14.2f}x")


if __name__ == "__main__":
    main()
