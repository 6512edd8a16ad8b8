"""How often the report's verdicts are wrong, on synthetic experiments (no training).

Each draw simulates one question the way the `losses` grid asks it: 2 pairs of
combinations (e.g. retfound vs lpips, edge_retfound vs edge_lpips) x 2 primary metrics,
n = 20 test images, k seeds per combination. A metric of one trial on one image is

    y = image effect + arm effect + seed effect + per-image noise

with the per-image noise SD as the unit (1), image effects N(0, 3^2) (large, shared by every
trial, as real test images differ far more than reconstructions do), seed effects
N(0, seed_sd^2), and the two primary metrics correlated (rho = 0.7 at the seed and the
image level, as PSNR and SSIM are). The report's own functions judge it:
ablate.report.inference.welch per (pair, metric) on the trial means, then
ablate.report.verdicts.judge (Holm over the question's 4 tests), pair_verdict and
headline; tests/report/test_inference.py checks that this path gives the same verdict as the full
report path (ablate.report.questions.answer_q1 on an Experiment).

Identical arms: any headline but "not enough evidence" is wrong. True effect (both
candidates better by `effect` seed SDs on both metrics): "yes" is right (power), "no" or
"mixed" is wrong. Monte-Carlo standard errors are sqrt(p (1 - p) / draws).

  PYTHONPATH=. python benchmarks/verdict_calibration.py [--draws 4000] [--fd-bias]

--fd-bias also measures the Frechet distance between two samples of ONE 2,048-d Gaussian
(isotropic, and a 1/k eigenvalue spectrum) at n = 20 ... 5,000 with the project's
frechet_distance_from_samples: the figures behind ablate.report.metric_names.FD_BIAS.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from ablate.report.inference import detectable_effect, welch
from ablate.report.verdicts import headline, judge, pair_verdict

N_IMAGES = 20
IMAGE_SD = 3.0
RHO = 0.7
METRICS = ("m1", "m2")  # both "higher is better"
SEED_SDS = (0.0, 0.5, 1.0, 2.5, 3.5)
SEEDS = (3, 5)
EFFECTS = (1.0, 2.0)  # in seed SDs


def _correlated(rng: np.random.Generator, shape: tuple, sd: float) -> np.ndarray:
    """(..., 2) draws, SD `sd`, correlation RHO between the two metrics (last axis)."""
    z = rng.standard_normal(shape + (2,))
    z[..., 1] = RHO * z[..., 0] + math.sqrt(1 - RHO ** 2) * z[..., 1]
    return sd * z


def simulate_arm(rng: np.random.Generator, images: np.ndarray, seeds: int, seed_sd: float, shift: float) -> np.ndarray:
    """(seeds, n_images, 2) per-image values of one combination."""
    n = images.shape[0]
    return images[None] + shift + _correlated(rng, (seeds, 1), seed_sd) + _correlated(rng, (seeds, n), 1.0)


def simulate_question(rng: np.random.Generator, seeds: int, seed_sd: float, shift: float, pairs: int = 2,
                      seeds_reference: int | None = None, sd_reference: float | None = None,
                      shared_reference: bool = False) -> dict:
    """One experiment: per-image values -> trial means -> the report's verdict functions.

    Args:
        seeds, seed_sd: the candidates' seeds and seed SD; shift: their true effect.
        seeds_reference, sd_reference: the references' (default: the candidates').
        shared_reference: one reference arm for every pair (Q2's shape: each edge arm against
            the one baseline) instead of one per pair (Q1's).

    Returns {"headline": ..., "pairs": [pair verdicts], "values": {(pair, arm): (seeds, n, 2)}}."""
    seeds_reference = seeds if seeds_reference is None else seeds_reference
    sd_reference = seed_sd if sd_reference is None else sd_reference
    images = _correlated(rng, (N_IMAGES,), IMAGE_SD)
    values, records = {}, []
    shared = simulate_arm(rng, images, seeds_reference, sd_reference, 0.0) if shared_reference else None
    for p in range(pairs):
        cand = simulate_arm(rng, images, seeds, seed_sd, shift)
        ref = shared if shared is not None else simulate_arm(rng, images, seeds_reference, sd_reference, 0.0)
        values[(p, "candidate")], values[(p, "reference")] = cand, ref
        for j, m in enumerate(METRICS):
            records.append({"combination": f"c{p}", "reference": f"r{p}", "metric": m, "direction": "higher",
                            "role": "primary", "trained_on": "", "excluded": "",
                            **welch(cand[:, :, j].mean(1), ref[:, :, j].mean(1))})
    judged = judge(records)
    verdicts = [pair_verdict([r for r in judged if r["combination"] == f"c{p}"]) for p in range(pairs)]
    return {"headline": headline(verdicts), "pairs": verdicts, "values": values}


# Identical arms at unequal seed counts and unequal seed spread (candidate SD = ratio x the
# reference's): the shapes an unstable arm that lost seeds produces. (candidate seeds,
# reference seeds, SD ratio); the reference seed SD is 1 (per-image noise SD units).
UNEQUAL = tuple((nc, nr, ratio) for nc, nr in ((3, 3), (5, 5), (10, 10), (3, 5), (5, 3), (3, 10), (10, 3), (5, 10))
                for ratio in (1.0, 3.0, 4.0, 1 / 3, 1 / 4))


def unequal_null_rates(draws: int, rng: np.random.Generator, cells=UNEQUAL) -> list[dict]:
    """Wrong-headline share of identical arms per (seeds, SD ratio, shape) cell."""
    out = []
    for shared in (False, True):
        for nc, nr, ratio in cells:
            res = [simulate_question(rng, nc, ratio, 0.0, seeds_reference=nr, sd_reference=1.0,
                                     shared_reference=shared) for _ in range(draws)]
            wrong = sum(r["headline"] != "not enough evidence" for r in res)
            out.append({"shape": "shared baseline" if shared else "one reference per pair", "seeds": nc,
                        "seeds_reference": nr, "sd_ratio": ratio, "wrong": rate(wrong, draws), "draws": draws})
    return out


def detectable_effect_check(draws: int, rng: np.random.Generator) -> list[dict]:
    """The report's power line (`detectable_effect`, for the 4 voting tests of a 2-pair question)
    against simulation: the share of YES per pair when both primaries of both pairs carry that
    true effect, and of the one test alone."""
    out = []
    for k in (3, 5, 10):
        delta = detectable_effect(k, k, len(METRICS) * 2)
        res = [simulate_question(rng, k, 1.0, delta) for _ in range(draws)]
        yes_pair = sum(v == "yes" for r in res for v in r["pairs"])
        out.append({"seeds": k, "delta": delta, "yes_pair": rate(yes_pair, draws * 2), "draws": draws})
    return out


def rate(hits: int, draws: int) -> tuple[float, float]:
    p = hits / draws
    return p, math.sqrt(p * (1 - p) / draws)


def null_rates(draws: int, rng: np.random.Generator, seeds_list=SEEDS, seed_sds=SEED_SDS) -> list[dict]:
    out = []
    for k in seeds_list:
        for sd in seed_sds:
            res = [simulate_question(rng, k, sd, 0.0) for _ in range(draws)]
            wrong = sum(r["headline"] != "not enough evidence" for r in res)
            wrong_pairs = sum(v != "not enough evidence" for r in res for v in r["pairs"])
            out.append({"seeds": k, "seed_sd": sd, "wrong": rate(wrong, draws),
                        "wrong_pair": rate(wrong_pairs, draws * 2), "draws": draws})
    return out


def power_rates(draws: int, rng: np.random.Generator) -> list[dict]:
    out = []
    for k in SEEDS:
        for sd in SEED_SDS[1:]:
            for eff in EFFECTS:
                res = [simulate_question(rng, k, sd, eff * sd) for _ in range(draws)]
                yes = sum(r["headline"] == "yes" for r in res)
                yes_pair = sum(v == "yes" for r in res for v in r["pairs"])
                wrong = sum(r["headline"] in ("no", "mixed") for r in res)
                out.append({"seeds": k, "seed_sd": sd, "effect_sd": eff, "yes": rate(yes, draws),
                            "yes_pair": rate(yes_pair, draws * 2), "wrong": rate(wrong, draws), "draws": draws})
    return out


def fd_bias(reps: int = 2) -> list[tuple[str, int, float, float]]:
    from ablate.evaluate.fidelity import frechet_distance_from_samples

    d = 2048
    rng = np.random.default_rng(0)
    k = 1.0 / np.arange(1, d + 1)
    spectra = {"isotropic": np.full(d, 1.0 / d), "1/k": k / k.sum()}  # tr(S) = 1
    out = []
    for name, lam in spectra.items():
        for n in (20, 200, 2000, 5000):
            v = [frechet_distance_from_samples(rng.standard_normal((n, d)) * np.sqrt(lam),
                                               rng.standard_normal((n, d)) * np.sqrt(lam)) for _ in range(reps)]
            out.append((name, n, float(np.mean(v)), float(np.std(v))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=4000, help="draws per identical-arms setting")
    ap.add_argument("--power-draws", type=int, default=2000, help="draws per true-effect setting")
    ap.add_argument("--unequal-draws", type=int, default=4000, help="draws per unequal-seeds cell")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fd-bias", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    print(f"Identical arms: share of wrong headlines (2 pairs x 2 primary metrics, n = {N_IMAGES} images; "
          "unit: per-image SD)")
    print("| seeds per arm | seed SD | wrong headline | (MC SE) | wrong pair verdict | draws |")
    print("|---|---|---|---|---|---|")
    for r in null_rates(args.draws, rng):
        print(f"| {r['seeds']} | {r['seed_sd']:g} | {r['wrong'][0]:.2%} | {r['wrong'][1]:.2%} | "
              f"{r['wrong_pair'][0]:.2%} | {r['draws']} |")
    print("\nTrue effect on both primary metrics of both pairs: share of YES (power)")
    print("| seeds per arm | seed SD | effect (seed SDs) | YES headline | (MC SE) | YES per pair | NO/MIXED | draws |")
    print("|---|---|---|---|---|---|---|---|")
    for r in power_rates(args.power_draws, rng):
        print(f"| {r['seeds']} | {r['seed_sd']:g} | {r['effect_sd']:g} | {r['yes'][0]:.1%} | {r['yes'][1]:.1%} | "
              f"{r['yes_pair'][0]:.1%} | {r['wrong'][0]:.2%} | {r['draws']} |")
    print("\nIdentical arms at unequal seed counts and seed spread (candidate seed SD = ratio x the reference's, "
          "reference seed SD 1): share of wrong headlines")
    print("| shape | seeds (candidate vs reference) | SD ratio | wrong headline | (MC SE) | draws |")
    print("|---|---|---|---|---|---|")
    for r in unequal_null_rates(args.unequal_draws, rng):
        print(f"| {r['shape']} | {r['seeds']} vs {r['seeds_reference']} | {r['sd_ratio']:.2g} | {r['wrong'][0]:.2%} | "
              f"{r['wrong'][1]:.2%} | {r['draws']} |")
    print("\nThe power line (detectable_effect, 4 voting tests) against simulation: YES per pair at that effect")
    print("| seeds per arm | detectable effect (seed SDs) | YES per pair | (MC SE) | draws |")
    print("|---|---|---|---|---|")
    for r in detectable_effect_check(args.power_draws, rng):
        print(f"| {r['seeds']} | {r['delta']:.3g} | {r['yes_pair'][0]:.1%} | {r['yes_pair'][1]:.1%} | {r['draws']} |")
    print(f"\n{time.time() - t0:.1f} s")
    if args.fd_bias:
        t1 = time.time()
        print("\nFD between two samples of ONE 2,048-d Gaussian, tr(S) = 1 (so the value is a share of tr(S))")
        print("| spectrum | n | FD | SD over reps |")
        print("|---|---|---|---|")
        for name, n, mean, sd in fd_bias():
            print(f"| {name} | {n} | {mean:.3f} | {sd:.4f} |")
        print(f"\n{time.time() - t1:.1f} s")


if __name__ == "__main__":
    main()
