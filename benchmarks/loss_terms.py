"""Per-step cost of each loss term, as a ratio to the L1-only training step.

One training step = autoencoder forward, composite loss, backward, Adam step
(+ the discriminator's own step for the adversarial term). Every variant is
timed in this one process, interleaved round-robin over repeats so drift in
machine load hits all of them alike; the figure is the median per variant.

Feature networks run with random weights (`pretrained: false`): the cost of a
forward/backward does not depend on the values of the weights, and no
pretrained file is available here. No number below is a quality figure.

    .venv/bin/python benchmarks/loss_terms.py            # tiny@64 and paper256@256
    .venv/bin/python benchmarks/loss_terms.py --quick    # tiny@64 only
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ablate.losses import CompositeLoss, LossSpec
from ablate.models.edge_channel import EdgeChannel, input_and_target
from ablate.models.presets import build_with_edge

BASE = [LossSpec("l1"), LossSpec("codebook")]
PAPER_SIGMAS = [0.8, 0.9, 1.0, 1.1]


def variants(size: int) -> dict[str, tuple[list[LossSpec], EdgeChannel | None]]:
    v = {
        "l1 (baseline)": ([], None),
        "l2": ([LossSpec("l2")], None),
        "ssim": ([LossSpec("ssim")], None),
        "adversarial (G + D step)": ([LossSpec("adversarial", weight=0.5, adaptive=True)], None),
        "lpips (VGG16 trunk)": ([LossSpec("lpips", adaptive=True, options={"pretrained": False})], None),
        "foundation (RETFound ViT-L/16 @224)": (
            [LossSpec("foundation", adaptive=True, options={"model": "retfound", "pretrained": False})], None),
        "edge channel (meijering, 4th channel)": ([LossSpec("edge_map_l1", weight=0.333)],
                                                  EdgeChannel("meijering", "green", {"sigmas": tuple(PAPER_SIGMAS)})),
    }
    if size >= 176:
        v["ms_ssim"] = ([LossSpec("ms_ssim")], None)
    for fam in ("sobel", "scharr", "prewitt", "log", "canny", "meijering", "frangi"):
        opts = {"sigmas": PAPER_SIGMAS} if fam in ("meijering", "frangi") else {}
        v[f"edge loss ({fam})"] = ([LossSpec("edge", options={"family": fam, **opts})], None)
    return v


def make_step(preset: str, size: int, batch: int, extra: list[LossSpec], edge: EdgeChannel | None):
    torch.manual_seed(0)
    model = build_with_edge(preset, size, None, edge)
    loss_fn = CompositeLoss.from_specs(BASE + extra)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.9))
    adv = loss_fn.adversaries()
    d_opt = torch.optim.Adam(loss_fn.parameters(), lr=1e-4) if adv else None
    x = torch.rand(batch, 3, size, size)
    x_in, target = input_and_target(edge, x)

    def step() -> None:
        x_hat, aux = model(x_in)
        loss, _ = loss_fn(target, x_hat, aux, step=10**6, last_layer=model.last_layer)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if d_opt is not None:
            d_loss, _ = loss_fn.discriminator_loss(target, x_hat, 10**6)
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()

    return step


def run(preset: str, size: int, batch: int, repeats: int) -> None:
    torch.set_num_threads(torch.get_num_threads())
    steps = {name: make_step(preset, size, batch, extra, edge) for name, (extra, edge) in variants(size).items()}
    for s in steps.values():  # warm-up: allocator, first-call kernels
        s()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, s in steps.items():
            t0 = time.perf_counter()
            s()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["l1 (baseline)"])
    print(f"\n{preset} @ {size} px, batch {batch}, {torch.get_num_threads()} threads, median of {repeats} steps")
    print(f"{'term added to L1 + codebook':<40} {'s/step':>8} {'ratio':>7}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:<40} {m:>8.3f} {m / base:>7.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny preset only")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, device cpu")
    run("tiny", 64, 4, args.repeats)
    if not args.quick:
        run("paper256", 256, 2, max(3, args.repeats // 2))


if __name__ == "__main__":
    main()
