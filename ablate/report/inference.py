"""Comparing two combinations with the trained model as the unit of inference.

Why the trial, not the image
----------------------------
Each trial (one seed of one combination) is evaluated on the same n test images. Model a
metric as y[arm, trial, image] = mu[arm] + u[trial] + v[image] + e, with trial u and image
v random and crossed. The image effects are shared by every trial, so they cancel in a
difference of arm means; what is left to vary is the trial: the REML / ANOVA test of the
arm effect in this balanced design is the t-test on the per-trial means over the shared
images. We use Welch's statistic on those trial means (difference in the metric's own units,
each arm's own variance) with Hsu's degrees of freedom, min(n_a, n_b) - 1, for its p value
and t interval. Why not the Welch-Satterthwaite df: with 3 to 10 seeds that df is estimated
from the same few variances, and when one arm's seeds scatter 3-4x more (an unstable loss
often does) the question's false-headline rate rose to 5-6 % at equal seed counts and to
9-11 % at 3 vs 5 or 3 vs 10 seeds (an arm that lost seeds); Hsu's df keeps every cell of
benchmarks/verdict_calibration.py's table at or below 5 %, at the price of power, which the
report states per question (`detectable_effect`).
A hierarchical bootstrap was the alternative; with 3 seeds per arm it has 10 distinct
resamples and a normal-theory width, so its intervals are far too narrow
(benchmarks/verdict_calibration.py measures Welch's error rate instead).
What it does not cover: the test images are fixed, so the interval is about training
runs on this test set, not about other test sets.

The per-image Wilcoxon signed-rank test on seed-averaged values (the old test, whose unit
was the image) is kept as a descriptive column only: it answers "how consistently do the
images agree", not "would another training run agree".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.integrate import quad
from scipy.optimize import brentq

LEVEL = 0.95
MIN_SEEDS = 3  # per arm: fewer gives "not enough seeds", never a verdict


# A pair whose standard error is at most this share of the metric's scale, max(1, |means|),
# has no seed-to-seed spread to test against: no p value, no vote (a tie of constant seeds,
# [0.5]*3 against [0.5 + 1e-9]*3, would otherwise give p = 0).
SE_TOLERANCE = 1e-9


def hsu_df(na: int, nb: int) -> float:
    """Hsu's conservative degrees of freedom of Welch's statistic: the smaller arm's n - 1."""
    return float(min(na, nb) - 1)


def welch(a, b, level: float = LEVEL) -> dict:
    """Welch's statistic of mean(a) - mean(b) (finite values of each) with Hsu's df
    (`hsu_df`): p value and t interval.

    n < 2 in either arm: no test (NaN). A standard error at or below SE_TOLERANCE x
    max(1, |mean(a)|, |mean(b)|): no test either, and `note` says so with both numbers
    (seeds that do not change the result are worth a look).

    Args:
        a: the candidate arm's values (one per seed); non-finite values are dropped.
        b: the reference arm's values, likewise.
        level: the confidence level of the interval.

    Returns the counts, means, difference, the seed SD of each arm (`sd`, `sd_reference`),
    se, df, t, p, the interval and a note.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    na, nb = len(a), len(b)
    mean_a, mean_b = (float(a.mean()) if na else math.nan), (float(b.mean()) if nb else math.nan)
    out = {"n_seeds": na, "n_seeds_reference": nb, "mean": mean_a, "reference_mean": mean_b,
           "sd": float(a.std(ddof=1)) if na > 1 else math.nan,
           "sd_reference": float(b.std(ddof=1)) if nb > 1 else math.nan,
           "diff": math.nan, "se": math.nan, "df": math.nan, "t": math.nan, "p": math.nan,
           "ci_low": math.nan, "ci_high": math.nan, "note": ""}
    if na == 0 or nb == 0:
        out["note"] = "no value in one arm"
        return out
    out["diff"] = diff = mean_a - mean_b
    if na < 2 or nb < 2:
        out["note"] = "one seed in an arm: no seed-to-seed variance"
        return out
    se = math.sqrt(a.var(ddof=1) / na + b.var(ddof=1) / nb)
    out["se"] = se
    tolerance = SE_TOLERANCE * max(1.0, abs(mean_a), abs(mean_b))
    if se <= tolerance:
        out["note"] = (f"no seed-to-seed spread: standard error {se:.2g} <= tolerance {tolerance:.2g} "
                       "(SE_TOLERANCE x max(1, |means|)), so no test")
        return out
    df = hsu_df(na, nb)
    t = diff / se
    half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    out.update(df=df, t=t, p=float(2 * sps.t.sf(abs(t), df)), ci_low=diff - half, ci_high=diff + half)
    return out


def one_sided_lower(r: dict, sign: float, level: float = LEVEL) -> float:
    """The lower end of the one-sided `level` t interval of sign x (mean(a) - mean(b)), from a
    `welch` record (its se and Hsu's df): sign +1 for a higher-is-better metric, -1 for a
    lower-is-better one, so the bound is on the candidate's gain. NaN where `welch` ran no
    test (its note says why).

    Args:
        r: `welch`'s output (diff, se, df).
        sign: +1 or -1.
        level: the one-sided confidence level.
    """
    if not math.isfinite(r["df"]):
        return math.nan
    return sign * r["diff"] - float(sps.t.ppf(level, r["df"])) * r["se"]


def detectable_effect(na: int, nb: int, tests: int, power: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest true difference, in seed SDs, that one test of `welch` finds significant
    with probability `power` when it is one of `tests` voting tests: Holm's first step
    (alpha / tests, two-sided), both arms with the same seed SD, Hsu's df. Holm's later
    steps are easier, so this errs on the large side; benchmarks/verdict_calibration.py
    checks it by simulation.

    Args:
        na: seeds in the candidate arm.
        nb: seeds in the reference arm (both >= 2, else NaN).
        tests: the voting tests of the question (Holm's family), >= 1.
        power: the probability of detection.
        alpha: the family-wise level.
    """
    if min(na, nb) < 2 or tests < 1:
        return math.nan
    df, scale = hsu_df(na, nb), math.sqrt(1 / na + 1 / nb)
    crit = float(sps.t.ppf(1 - alpha / tests / 2, df))

    def short_of(delta: float) -> float:
        # P(|T| > crit) for T = (Z + nc) / sqrt(V / df), V ~ chi2(df): the noncentral t of Welch's
        # statistic at equal seed SDs, integrated over V (scipy's nct.sf turns NaN far in its tail).
        nc = delta / scale

        def given(v: float) -> float:
            bound = crit * math.sqrt(v / df)
            return float(sps.chi2.pdf(v, df) * (sps.norm.cdf(nc - bound) + sps.norm.cdf(-bound - nc)))

        return quad(given, 0.0, math.inf, limit=200)[0] - power

    high = 1.0
    while short_of(high) < 0:
        high *= 2
    return float(brentq(short_of, 0.0, high, xtol=1e-6))


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1). NaN in, NaN out,
    and NaNs do not count towards the number of tests."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def wilcoxon(d) -> dict:
    """Two-sided Wilcoxon signed-rank test of paired differences `d` (finite values); descriptive."""
    d = np.asarray(d, dtype=float)
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        return {"statistic": 0.0, "wilcoxon_p": 1.0, "n_nonzero": 0}
    r = sps.wilcoxon(d)
    return {"statistic": float(r.statistic), "wilcoxon_p": float(r.pvalue), "n_nonzero": nonzero}


def seed_averaged(image_metrics: pd.DataFrame, combination: str) -> pd.DataFrame:
    """(image_id x metric) table of one combination, each value averaged over its seeds."""
    sub = image_metrics[image_metrics["combination"] == combination]
    return sub.groupby(["image_id", "metric"])["value"].mean().unstack("metric")


def image_agreement(wa: pd.DataFrame, wb: pd.DataFrame, metric: str, higher: bool) -> dict:
    """Descriptive per-image columns: images where `a` is better / worse, and the Wilcoxon p."""
    if metric not in wa.columns or metric not in wb.columns:
        return {"n_images": 0, "images_better": 0, "images_worse": 0, "wilcoxon_p": math.nan}
    pair = pd.concat([wa[metric].rename("a"), wb[metric].rename("b")], axis=1, join="inner").dropna()
    d = (pair["a"] - pair["b"]).to_numpy()
    sign = 1.0 if higher else -1.0
    out: dict[str, float] = {"n_images": len(d), "images_better": int((sign * d > 0).sum()), "images_worse": int((sign * d < 0).sum())}
    out["wilcoxon_p"] = wilcoxon(d)["wilcoxon_p"] if len(d) else math.nan
    return out


COLUMNS = ["combination", "reference", "metric", "direction", "role", "trained_on", "excluded", "n_seeds",
           "n_seeds_reference", "mean", "reference_mean", "sd", "sd_reference", "diff", "ci_low", "ci_high", "se", "df", "t", "p", "note",
           "n_images", "images_better", "images_worse", "wilcoxon_p"]
