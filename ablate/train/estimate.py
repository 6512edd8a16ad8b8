"""`ablate launch --estimate`: the grid's expected wall time on the resources present,
from a short measured probe, before the cluster is committed.

Trials that differ only in seed cost the same, so one probe per distinct model/loss
configuration: a few training steps (the trial's `train_step`, its precision and
memory format, its per-worker batch) timed after a warm-up, on this machine's device.
Every term is switched on in the probe (start steps ignored), which is the steady
state of all but the first `start_step` steps. Pretrained trunks are timed at random
weights of the same architecture (the arithmetic is the same; no file is needed), and
`foundation: auto` / `fundus_mae` is timed as RETFound's ViT-L/16, the largest choice,
so the estimate is an upper bound for a smaller fundus MAE.

Projection: each trial takes steps x its step time (x `slowdown`: how much slower a
step gets when `concurrent` trials share the device; 1 when each has its own CPUs or
GPU, measured by benchmarks/gpu.py for packed GPU trials) + `startup_s`; the trials are
placed longest first on `concurrent` slots (what Tune's FIFO does with equal trials).
Validation passes and checkpoints are not in the probe: the estimate is a lower bound
for them.
"""

from __future__ import annotations

import dataclasses
import heapq
import statistics
import time
from dataclasses import dataclass

from ablate.specs import Grid, TrialSpec

STARTUP_S = 15.0  # per trial: driver, worker group and first batch (BENCHMARKS.md, tiny grid on 2 CPUs)


def config_key(spec: TrialSpec) -> tuple:
    """What decides a step's cost: model, input size, batch, precision, compile and loss terms (not the seed)."""
    t = spec.train
    losses = tuple((l.name, tuple(sorted((k, str(v)) for k, v in l.options.items()))) for l in spec.losses)
    return (spec.model.preset, tuple(sorted((k, str(v)) for k, v in spec.model.overrides.items())),
            str(spec.model.edge_channel), spec.data.size, t.batch_size, t.precision, t.compile, t.channels_last,
            losses)


def distinct_configs(grid: Grid) -> dict[tuple, list[TrialSpec]]:
    """Trials grouped by `config_key`, in grid order."""
    out: dict[tuple, list[TrialSpec]] = {}
    for s in grid.trials:
        out.setdefault(config_key(s), []).append(s)
    return out


def probe_spec(spec: TrialSpec) -> TrialSpec:
    """The trial as the probe times it: every term on from step 0, pretrained trunks at
    random weights of the same architecture."""
    losses = []
    for l in spec.losses:
        opts = dict(l.options)
        if l.name == "lpips":
            opts = {"pretrained": False}
        elif l.name == "foundation":
            keep = {k: v for k, v in opts.items() if k in ("taps", "distance", "imagenet_norm", "input_size")}
            if opts.get("model", "retfound") in ("auto", "fundus_mae"):
                keep.pop("taps", None)  # RETFound's own taps
                opts = {**keep, "model": "retfound", "pretrained": False}
            else:
                opts = {**keep, "model": opts.get("model", "retfound"), "pretrained": False,
                        **({"arch": opts["arch"]} if "arch" in opts else {})}
        losses.append(dataclasses.replace(l, start_step=0, options=opts))
    return dataclasses.replace(spec, losses=tuple(losses))


@dataclass(frozen=True)
class Probe:
    step_s: float  # median seconds per training step
    precision: str  # as resolved on the probe's device
    device: str
    first_step_s: float  # the first step (compile included when train.compile)
    peak_bytes: int | None = None  # CUDA: the most memory the trial's step held (None on the CPU)


def packing_for(gpu_bytes: int, peak_bytes: int, headroom: float = 0.85, most: int = 8) -> float:
    """--gpus-per-worker that packs as many trials of `peak_bytes` on a GPU of `gpu_bytes`
    as fit within `headroom` of its memory (at most `most`): 1, 1/2, 1/3, ... Whether packing
    also gains throughput is benchmarks/gpu.py's question; this is only what fits."""
    if peak_bytes <= 0 or gpu_bytes <= 0:
        raise ValueError(f"need positive sizes, got gpu {gpu_bytes} and peak {peak_bytes}")
    k = max(1, min(most, int(gpu_bytes * headroom // peak_bytes)))
    return round(1 / k, 4)


def measure_step(spec: TrialSpec, workers: int = 1, steps: int = 5, warmup: int = 2, device: str | None = None,
                 threads: int | None = None) -> Probe:
    """Time `steps` training steps of `spec` (its per-worker batch) after `warmup` ones."""
    import torch

    from ablate.losses import CompositeLoss
    from ablate.models.edge_channel import input_and_target
    from ablate.models.presets import build_for_spec
    from ablate.runtime import resolve_precision
    from ablate.train.step import train_step

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    spec = probe_spec(spec)
    t = spec.train
    torch.manual_seed(spec.seed)
    model, edge = build_for_spec(spec)
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format
    model = model.to(dev).to(memory_format=fmt)
    if t.compile:
        model.compile()
    loss_fn = CompositeLoss.from_specs(spec.losses).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=t.lr, betas=t.betas)
    adversaries = loss_fn.adversaries()
    d_opt = torch.optim.Adam([p for a in adversaries for p in a.module.parameters()]) if adversaries else None
    precision = resolve_precision(t.precision, dev.type)
    scaler = precision.grad_scaler()
    if scaler is not None:
        loss_fn.grad_scale = scaler.scale
    per_worker = max(1, t.batch_size // workers)
    x = torch.rand(per_worker, 3, spec.data.size, spec.data.size, device=dev)
    x, target = (v.contiguous(memory_format=fmt) for v in input_and_target(edge, x))

    def one(step: int) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        logs = train_step(model, loss_fn, opt, d_opt, precision, scaler, x, step, model.last_layer, target=target)[2]
        float(logs["loss/total"])  # the host sync a logged step makes
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - tic

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    first = one(0)
    for s in range(1, warmup):
        one(s)
    times = [one(warmup + s) for s in range(steps)]
    peak = int(torch.cuda.max_memory_reserved(dev)) if dev.type == "cuda" else None
    return Probe(statistics.median(times), precision.name, dev.type, first, peak)


def trial_seconds(spec: TrialSpec, step_s: float, slowdown: float = 1.0, startup_s: float = STARTUP_S) -> float:
    if spec.train.epochs is not None:
        raise ValueError("--estimate needs train.steps; this grid trains whole epochs (steps per epoch depend on "
                         "the data and workers)")
    return spec.train.steps * step_s * slowdown + startup_s


def project_wall(trial_s: list[float], concurrent: int) -> float:
    """Wall time of trials of these lengths on `concurrent` slots, longest first."""
    if concurrent < 1:
        raise ValueError(f"concurrent must be >= 1, got {concurrent}")
    slots = [0.0] * min(concurrent, max(1, len(trial_s)))
    for s in sorted(trial_s, reverse=True):
        heapq.heapreplace(slots, slots[0] + s)
    return max(slots)


def estimate(grid: Grid, concurrent: int, workers: int = 1, slowdown: float = 1.0, steps: int = 5,
             threads: int | None = None, device: str | None = None, startup_s: float = STARTUP_S) -> dict:
    """{"configs": [(combination names, Probe, trials, seconds per trial)], "wall_s": projected}."""
    rows, lengths = [], []
    for group in distinct_configs(grid).values():
        probe = measure_step(group[0], workers=workers, steps=steps, threads=threads, device=device)
        per = trial_seconds(group[0], probe.step_s, slowdown, startup_s)
        rows.append((sorted({s.combination for s in group}), probe, len(group), per))
        lengths += [trial_seconds(s, probe.step_s, slowdown, startup_s) for s in group]
    return {"configs": rows, "wall_s": project_wall(lengths, concurrent)}


def format_estimate(result: dict, concurrent: int, slowdown: float) -> str:
    lines = [f"{'configuration':<34} {'device':<6} {'prec':<5} {'s/step':>8} {'trials':>6} {'h/trial':>8}"]
    for names, probe, n, per in result["configs"]:
        lines.append(f"{','.join(names)[:34]:<34} {probe.device:<6} {probe.precision:<5} {probe.step_s:>8.3f} "
                     f"{n:>6} {per / 3600:>8.2f}")
    peaks = [p.peak_bytes for _, p, _, _ in result["configs"] if p.peak_bytes]
    if peaks:
        import torch

        total = torch.cuda.get_device_properties(0).total_memory
        lines.append(f"largest per-trial peak {max(peaks) / 2**30:.1f} GiB of {total / 2**30:.0f} GiB: "
                     f"--gpus-per-worker {packing_for(total, max(peaks)):g} packs what fits")
    lines.append(f"projected grid wall time: {result['wall_s'] / 3600:.2f} h with {concurrent} trial(s) at a time"
                 f"{f' (steps {slowdown:g}x slower when sharing the device)' if slowdown != 1 else ''}; "
                 f"{STARTUP_S:g} s start-up per trial; validation and checkpoints not included")
    return "\n".join(lines)
