"""The GPU path, measured in one run on whatever CUDA device is present (issue 18).

1. MFU in bf16 of paper256 at 256 px, batch 16 and 32, eager / channels_last /
   channels_last + torch.compile, against the bf16 matmul rate measured on the same
   GPU (FLOPs per step counted by FlopCounterMode; the trial's own `train_step`).
2. A Ray trial (`ablate launch`: Tune -> TorchTrainer -> one worker fed by Ray Data,
   bf16, the demo data at 256 px) against a bare loop of the same step on the same GPU:
   steady images/s and their ratio.
3. 1, 2, 4 and 8 trials packed on one GPU (separate processes, each the bare step loop,
   all timed over the same wall-clock window): images/s summed, ratio to one trial.
4. The projected wall time of the full `losses` grid (18 trials x 20,000 steps): each
   of its 6 configurations probed (`train/estimate.py`), projected on this machine's
   GPUs one trial per GPU and at the best packing measured in 3.

Sized to finish in under 8 minutes (`--budget-s`: a section that would start after
the budget is skipped and said so). Prints a Markdown table for BENCHMARKS.md and
writes the figures as JSON (`--json`).

    .venv/bin/python benchmarks/gpu.py --json gpu.json

`--device cpu --preset tiny --size 32` runs every section's code on the CPU at a toy size:
a check that the script works before GPU time is spent on it, never a figure to report.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TARGETS = {"mfu_bf16_b32": 0.40, "ray_over_bare": 0.95, "packed4_over_1": 2.5}
PACKS = (1, 2, 4, 8)
GRID_STEPS, GRID_TRIALS = 20_000, 18

RAY_GRID = """
name: gpu_overhead
base:
  data: {{size: {size}, augment: {{hflip: true, rotate_deg: 10}}}}
  model: {{preset: {preset}}}
  train: {{steps: {steps}, batch_size: {batch}, lr: 4.5e-6, log_every: {log_every}, image_every: {steps},
          val_every: {steps}, val_batches: 1, checkpoint_every: {steps}, precision: bf16}}
  losses: {{l1: {{weight: 1.0}}, codebook: {{weight: 1.0}}}}
combinations:
  ray: {{}}
seeds: [0]
"""


class NoCuda(SystemExit):
    pass


@dataclass(frozen=True)
class Setting:
    """What every section measures on: the device, the model preset and the image side."""

    device: str = "cuda"
    preset: str = "paper256"
    size: int = 256

    @property
    def precision(self) -> str:
        return "bf16"


SET = Setting()  # main() replaces it from the command line


def require_cuda() -> str:
    """The device's name, or exit at once saying why nothing was measured."""
    import torch

    if not torch.cuda.is_available():
        raise NoCuda("benchmarks/gpu.py needs a CUDA device, and torch sees none "
                     f"(torch {torch.__version__}, torch.cuda.is_available() is False). Nothing was measured.")
    return torch.cuda.get_device_name(0)


# -- pure helpers (tested on the CPU) --

def mfu(flops_per_step: float, step_s: float, peak_flops_per_s: float) -> float:
    return flops_per_step / step_s / peak_flops_per_s


def packing_rows(rates: dict[int, list[float]]) -> list[dict]:
    """{k: per-process images/s} -> rows with the sum and its ratio to one trial."""
    one = sum(rates[1])
    return [{"trials": k, "images_per_s": sum(r), "per_trial": sum(r) / k, "over_1": sum(r) / one}
            for k, r in sorted(rates.items())]


def best_packing(rows: list[dict]) -> dict:
    return max(rows, key=lambda r: r["images_per_s"])


def verdict(value: float | None, target: float) -> str:
    if value is None:
        return "not measured"
    return f"{'meets' if value >= target else 'misses'} target {target:g}"


def markdown(r: dict) -> str:
    """The BENCHMARKS.md table from the figures `main` collects (missing sections said)."""
    head = (f"Device: {r.get('device', '?')}, torch {r.get('torch', '?')}, bf16 matmul "
            f"{r.get('peak_tflops', float('nan')):.0f} TFLOP/s measured (n={r.get('peak_n', '?')}).")
    setting = r.get("setting", {"preset": "paper256", "size": 256})
    where = f"{setting['preset']} {setting['size']} px"
    lines = [head, "",
             "| measure | setting | value | target |", "|---|---|---|---|"]
    for row in r.get("mfu", []):
        target = verdict(row["mfu"], TARGETS["mfu_bf16_b32"]) if row["batch"] == 32 else ""
        lines.append(f"| MFU bf16 {where} | batch {row['batch']}, {row['variant']} | "
                     f"{row['mfu']:.1%} ({row['images_per_s']:.0f} img/s, {row['step_ms']:.1f} ms/step) | {target} |")
    ray = r.get("ray")
    if ray:
        lines.append(f"| Ray trial / bare loop | batch {ray['batch']}, {ray['steps']} steps | {ray['ratio']:.3f} "
                     f"({ray['ray_images_per_s']:.0f} vs {ray['bare_images_per_s']:.0f} img/s) | "
                     f"{verdict(ray['ratio'], TARGETS['ray_over_bare'])} |")
    for row in r.get("packing", []):
        target = verdict(row["over_1"], TARGETS["packed4_over_1"]) if row["trials"] == 4 else ""
        lines.append(f"| packed trials on one GPU | {row['trials']} | {row['images_per_s']:.0f} img/s summed, "
                     f"{row['over_1']:.2f}x one trial | {target} |")
    for row in r.get("projection", []):
        lines.append(f"| {row.get('grid', 'losses')} grid, {row.get('trials', GRID_TRIALS)} x "
                     f"{row.get('steps', GRID_STEPS)} steps | {row['setting']} | "
                     f"{row['wall_h']:.1f} h projected | |")
    for name in r.get("skipped", []):
        lines.append(f"| {name} | not measured (skipped or failed, see the log) | | |")
    return "\n".join(lines)


# -- measurements (need CUDA) --

def _sync():
    import torch

    if SET.device == "cuda":
        torch.cuda.synchronize()


def matmul_rate(n: int = 8192, repeats: int = 20) -> float:
    import torch

    a = torch.randn(n, n, device=SET.device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=SET.device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync()
    return 2 * n ** 3 * repeats / (time.perf_counter() - t0)


class Stepper:
    """paper256 + L1 + codebook, the trial's `train_step` under bf16 autocast."""

    def __init__(self, batch: int, channels_last: bool = True, compile: bool = False):
        import torch

        from ablate.losses import CompositeLoss, LossSpec
        from ablate.models.presets import build_model
        from ablate.runtime import resolve_precision

        torch.manual_seed(0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        size, dev = SET.size, SET.device
        self.model = build_model(SET.preset, size).to(dev).to(memory_format=fmt)
        if compile:
            self.model.compile()
        self.loss_fn = CompositeLoss.from_specs([LossSpec("l1"), LossSpec("codebook")]).to(dev)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=4.5e-6, betas=(0.5, 0.9))
        self.precision = resolve_precision(SET.precision, dev)
        self.x = torch.rand(batch, 3, size, size, device=dev).contiguous(memory_format=fmt)
        self.step_no = 0

    def __call__(self, x=None):
        from ablate.train.step import train_step

        out = train_step(self.model, self.loss_fn, self.opt, None, self.precision, None,
                         self.x if x is None else x, self.step_no, self.model.last_layer)
        self.step_no += 1
        return out

    def timed(self, steps: int, warmup: int) -> float:
        for _ in range(warmup):
            self()
        _sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            self()
        _sync()
        return (time.perf_counter() - t0) / steps


def measure_mfu(peak: float, batches=(16, 32), steps: int = 10, compile_batches=(16, 32)) -> list[dict]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    rows = []
    for batch in batches:
        flops = None
        for variant, cl, comp in (("eager", False, False), ("channels_last", True, False),
                                  ("channels_last+compile", True, True)):
            if comp and batch not in compile_batches:
                print(f"  batch {batch} {variant}: not measured (--compile-batches)", flush=True)
                continue
            s = Stepper(batch, channels_last=cl, compile=comp)
            if flops is None:
                with FlopCounterMode(display=False) as counter:
                    s()
                flops = counter.get_total_flops()
            t0 = time.perf_counter()
            step_s = s.timed(steps, warmup=5 if comp else 3)
            rows.append({"batch": batch, "variant": variant, "gflop_per_step": flops / 1e9, "step_ms": step_s * 1e3,
                         "images_per_s": batch / step_s, "mfu": mfu(flops, step_s, peak),
                         "section_s": time.perf_counter() - t0})
            print(f"  batch {batch} {variant}: {step_s * 1e3:.1f} ms/step, MFU {rows[-1]['mfu']:.1%}", flush=True)
            del s
            if SET.device == "cuda":
                torch.cuda.empty_cache()
    return rows


def bare_rate(images, batch: int, steps: int, log_every: int) -> float:
    """images/s of the bare loop: the same step, augmentation and logging sync, on decoded images in GPU memory."""
    import torch

    from ablate.data.augment import augment_batch
    from ablate.specs import AugmentSpec

    s = Stepper(batch)
    images = images.to(SET.device)
    g = torch.Generator().manual_seed(0)
    rates, seen, tic = [], 0, time.perf_counter()
    for step in range(steps):
        idx = torch.randint(len(images), (batch,), generator=g)
        x = augment_batch(images[idx.to(SET.device)].float() / 255, AugmentSpec(), seed=0, rank=0, step=step)
        logs = s(x.contiguous(memory_format=torch.channels_last))[2]
        seen += batch
        if (step + 1) % log_every == 0:
            torch.stack([v.detach().float().reshape(()) for v in logs.values()]).tolist()
            rates.append(seen / (time.perf_counter() - tic))
            seen, tic = 0, time.perf_counter()
    del s
    if SET.device == "cuda":
        torch.cuda.empty_cache()
    return statistics.median(rates[2:])


def measure_ray(work: Path, batch: int = 16, steps: int = 300, log_every: int = 25) -> dict:
    import pandas as pd
    from ray_overhead import decoded_split, logged_rates

    from ablate.data.demo import ensure_demo
    from ablate.pipeline import LaunchOptions, launch

    data = ensure_demo(SET.size)
    grid = work / "gpu_overhead.yaml"
    grid.write_text(RAY_GRID.format(size=SET.size, preset=SET.preset, steps=steps, batch=batch, log_every=log_every))
    out = work / f"exp-{int(time.time())}"
    cuda = SET.device == "cuda"
    launch(LaunchOptions(grid=str(grid), data=str(data), out=str(out), evaluate=False, concurrent=1,
                         gpus_per_worker=1 if cuda else 0, cpus_per_worker=4 if cuda else None))
    row = pd.read_parquet(out / "results.parquet").iloc[0]
    ray_rate = statistics.median(logged_rates(out / "tensorboard" / row["trial"])[2:])
    bare = bare_rate(decoded_split(data, "train", SET.size), batch, steps, log_every)
    return {"batch": batch, "steps": steps, "ray_images_per_s": ray_rate, "bare_images_per_s": bare,
            "ratio": ray_rate / bare, "ray_startup_s": float(row.get("time/startup_s", float("nan")))}


def child(batch: int, start_at: float, seconds: float) -> None:
    """One packed trial: warm up, then count images over [start_at, start_at + seconds]."""
    s = Stepper(batch)
    s.timed(3, warmup=2)
    while time.time() < start_at:
        s()
    _sync()
    seen, t0 = 0, time.time()
    while time.time() < start_at + seconds:
        s()
        seen += batch
    _sync()
    print(json.dumps({"images_per_s": seen / (time.time() - t0)}), flush=True)


def measure_packing(packs=PACKS, batch: int = 16, seconds: float = 12.0, setup_s: float = 25.0) -> list[dict]:
    """k separate processes per round, each the bare step loop, all counting over one wall-clock window."""
    rates: dict[int, list[float]] = {}
    where = ["--device", SET.device, "--preset", SET.preset, "--size", str(SET.size)]
    for k in packs:
        start_at = time.time() + setup_s
        procs = [subprocess.Popen([sys.executable, __file__, "--child", "--batch", str(batch), "--start-at",
                                   str(start_at), "--seconds", str(seconds), *where], stdout=subprocess.PIPE, text=True)
                 for _ in range(k)]
        outs = [p.communicate(timeout=setup_s + seconds + 120)[0] for p in procs]
        if any(p.returncode for p in procs):
            raise RuntimeError(f"a packed trial failed ({k} packed): return codes {[p.returncode for p in procs]}")
        rates[k] = [json.loads(o.strip().splitlines()[-1])["images_per_s"] for o in outs]
        print(f"  {k} packed: {sum(rates[k]):.0f} img/s summed", flush=True)
    return packing_rows(rates)


def project_grid(name: str, packing: list[dict] | None) -> list[dict]:
    """The wall time of search space `name` here: each distinct configuration probed for a few
    steps (train/estimate.py), one trial per GPU, and at the best packing measured."""
    import torch

    from ablate.config import resolve_grid
    from ablate.train.estimate import estimate, packing_for, project_wall, trial_seconds

    full, _ = resolve_grid(name, precision="bf16")
    cuda = SET.device == "cuda"
    gpus = torch.cuda.device_count() if cuda else 1
    result = estimate(full, concurrent=gpus, device=SET.device, steps=5)
    peak = max((p.peak_bytes or 0 for _, p, _, _ in result["configs"]), default=0)  # None off CUDA
    memory = torch.cuda.get_device_properties(0).total_memory if cuda else 0
    fits = f"memory allows --gpus-per-worker {packing_for(memory, peak):g}" if cuda and peak else "no GPU memory read"
    rows = [{"grid": name, "trials": len(full.trials), "steps": full.trials[0].train.steps,
             "setting": f"1 trial per GPU, {gpus} GPU(s); largest trial peak {peak / 2**30:.1f} GiB ({fits})",
             "wall_h": result["wall_s"] / 3600,
             "step_s": {",".join(n): p.step_s for n, p, _, _ in result["configs"]}}]
    if packing:
        best = best_packing(packing)
        k = best["trials"]
        slowdown = k / best["over_1"]  # each packed trial's step is this much slower than alone
        lengths = []
        for _names, probe, n, _ in result["configs"]:
            lengths += [trial_seconds(full.trials[0], probe.step_s, slowdown)] * n
        rows.append({"grid": name, "trials": len(full.trials), "steps": full.trials[0].train.steps,
                     "setting": f"{k} packed per GPU (measured {best['over_1']:.2f}x), {gpus} GPU(s)",
                     "wall_h": project_wall(lengths, k * gpus) / 3600})
    return rows


def main() -> None:
    global SET
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "ablate-gpu-bench")
    ap.add_argument("--budget-s", type=float, default=470.0, help="skip sections that would start after this")
    ap.add_argument("--device", default="cuda", help="cuda; cpu only to check the script at a toy size")
    ap.add_argument("--preset", default="paper256")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--mfu-steps", type=int, default=10, help="timed steps per MFU variant")
    ap.add_argument("--compile-batches", default="16,32", help="batch sizes also timed under torch.compile")
    ap.add_argument("--packs", default=",".join(map(str, PACKS)), help="trials packed per round, e.g. 1,2,4,8")
    ap.add_argument("--pack-seconds", type=float, default=12.0, help="the common counting window of a round")
    ap.add_argument("--pack-setup-s", type=float, default=25.0, help="time each round's processes get to start")
    ap.add_argument("--ray-steps", type=int, default=300)
    ap.add_argument("--grid", default="losses", help="the search space whose wall time is projected")
    ap.add_argument("--sections", default="mfu,packing,projection,ray", help="which sections to run (a rerun of one)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=16, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=12.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    SET = Setting(args.device, args.preset, args.size)
    if args.child:
        return child(args.batch, args.start_at, args.seconds)
    import torch

    device = require_cuda() if SET.device == "cuda" else f"{SET.device} (code check only: no figure to report)"
    t0 = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    r: dict = {"device": device, "torch": torch.__version__, "skipped": [], "setting": vars(SET),
               "gpus": torch.cuda.device_count() if SET.device == "cuda" else 0}
    peak_n = 8192 if SET.device == "cuda" else 512
    r["peak_tflops"], r["peak_n"] = matmul_rate(peak_n) / 1e12, peak_n
    print(f"{device}: bf16 matmul {r['peak_tflops']:.0f} TFLOP/s", flush=True)
    packs = tuple(int(k) for k in args.packs.split(","))
    # (name, rough seconds it needs, function)
    sections = [("mfu", 150, lambda: measure_mfu(r["peak_tflops"] * 1e12, steps=args.mfu_steps,
                                                    compile_batches=tuple(int(b) for b in args.compile_batches.split(","))
                                                    )),
                ("packing", len(packs) * (args.pack_setup_s + args.pack_seconds + 5),
                 lambda: measure_packing(packs, seconds=args.pack_seconds, setup_s=args.pack_setup_s)),
                ("projection", 60, lambda: project_grid(args.grid, r.get("packing"))),
                ("ray", 90, lambda: measure_ray(args.work, steps=args.ray_steps,
                                                log_every=max(5, args.ray_steps // 12)))]
    chosen = set(args.sections.split(","))
    for name, need, fn in sections:
        if name not in chosen:
            continue
        left = args.budget_s - (time.perf_counter() - t0)
        if left < need * 0.5:
            r["skipped"].append(name)
            print(f"{name}: skipped ({left:.0f} s of the budget left, it needs about {need} s)", flush=True)
            continue
        print(f"{name} ...", flush=True)
        t_section = time.perf_counter()
        try:
            r[name] = fn()
        except Exception as e:  # noqa: BLE001 - one section failing must not lose the others' figures: said in the table
            r["skipped"].append(f"{name} (failed: {type(e).__name__}: {e})")
            print(f"{name}: FAILED {type(e).__name__}: {e}", flush=True)
        r.setdefault("section_s", {})[name] = time.perf_counter() - t_section
        if args.json:  # after each section: a run cut off at its limit keeps what it measured
            args.json.write_text(json.dumps(r, indent=1, default=str))
    r["wall_s"] = time.perf_counter() - t0
    print("\n" + markdown(r))
    print(f"\n(whole run {r['wall_s']:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(r, indent=1, default=str))


if __name__ == "__main__":
    main()
