"""Which degrees of freedom hold the report's level: Welch-Satterthwaite, Hsu's min(n) - 1, or
Welch-Satterthwaite at equal seed counts and Hsu's otherwise (the choice behind
ablate.report.inference.welch, issue 27).

A vectorised shortcut of benchmarks/verdict_calibration.py's identical-arms simulation: the
trial means of two pairs x two primary metrics (correlated 0.7), seed effects of SD `ratio`
(candidate) and 1 (reference) plus the mean of 20 images' noise; a wrong headline is any test
below alpha / 4 (Holm's first step: with identical arms, any significant test makes one).

    PYTHONPATH=. python benchmarks/df_rules.py [--draws 20000]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
RULES = ("welch", "hsu", "mixed")


def _correlated(rng: np.random.Generator, shape: tuple, sd: float) -> np.ndarray:
    z = rng.standard_normal(shape + (2,))
    z[..., 1] = 0.7 * z[..., 0] + math.sqrt(1 - 0.49) * z[..., 1]
    return sd * z


def _arm(rng: np.random.Generator, draws: int, seeds: int, sd: float) -> np.ndarray:
    """(draws, seeds, 2) trial means: seed effect + the mean of 20 images' unit noise."""
    return _correlated(rng, (draws, seeds), sd) + _correlated(rng, (draws, seeds), 1 / math.sqrt(20))


def p_values(a: np.ndarray, b: np.ndarray, rule: str) -> np.ndarray:
    na, nb = a.shape[1], b.shape[1]
    va, vb = a.var(1, ddof=1) / na, b.var(1, ddof=1) / nb
    t = (a.mean(1) - b.mean(1)) / np.sqrt(va + vb)
    satterthwaite = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    hsu = np.full_like(satterthwaite, min(na, nb) - 1.0)
    df = {"welch": satterthwaite, "hsu": hsu, "mixed": satterthwaite if na == nb else hsu}[rule]
    return 2 * sps.t.sf(np.abs(t), df)


def wrong_headline(rng: np.random.Generator, seeds: int, seeds_ref: int, ratio: float, shared: bool, rule: str,
                   draws: int) -> float:
    base = _arm(rng, draws, seeds_ref, 1.0) if shared else None
    ps = [p_values(_arm(rng, draws, seeds, ratio), base if shared else _arm(rng, draws, seeds_ref, 1.0), rule)
          for _ in range(2)]
    return float((np.concatenate(ps, axis=1).min(1) < ALPHA / 4).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    print("| shape | seeds (candidate vs reference) | SD ratio | " + " | ".join(RULES) + " |")
    print("|---|---|---|" + "---|" * len(RULES))
    for shared in (False, True):
        for nc, nr in ((3, 3), (5, 5), (10, 10), (3, 5), (5, 3), (3, 10), (10, 3), (5, 10)):
            for ratio in (1.0, 3.0, 4.0, 1 / 3, 1 / 4):
                r = [wrong_headline(rng, nc, nr, ratio, shared, rule, args.draws) for rule in RULES]
                print(f"| {'shared baseline' if shared else 'one reference per pair'} | {nc} vs {nr} | {ratio:.2g} | "
                      + " | ".join(f"{v:.2%}" for v in r) + " |")


if __name__ == "__main__":
    main()
