"""Comparing two combinations with the trained model as the unit of inference.

Why the trial, not the image
----------------------------
Each trial (one seed of one combination) is evaluated on the same n test images. Model a
metric as y[arm, trial, image] = mu[arm] + u[trial] + v[image] + e, with trial u and image
v random and crossed. The image effects are shared by every trial, so they cancel in a
difference of arm means; what is left to vary is the trial: the REML / ANOVA test of the
arm effect in this balanced design is the t-test on the per-trial means over the shared
images. We use Welch's t on those trial means (difference in the metric's own units,
Welch-Satterthwaite df, t interval): exact under normality with equal seed spread, and
it keeps its level when one arm's seeds scatter more (an unstable loss often does).
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
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

LEVEL = 0.95
MIN_SEEDS = 3  # per arm: fewer gives "not enough seeds", never a verdict


def welch(a, b, level: float = LEVEL) -> dict:
    """Welch's t of mean(a) - mean(b) (finite values of each), by scipy.stats.ttest_ind
    (equal_var=False); the interval is its t interval.

    n < 2 in either arm: no test (NaN). Both arms without spread: p = 1 when the means are
    equal, else p = 0 with a zero-width interval, and `note` says so (seeds that do not
    change the result are worth a look).

    Args:
        a: the candidate arm's values (one per seed); non-finite values are dropped.
        b: the reference arm's values, likewise.
        level: the confidence level of the interval.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    na, nb = len(a), len(b)
    out = {"n_seeds": na, "n_seeds_reference": nb,
           "mean": float(a.mean()) if na else math.nan, "reference_mean": float(b.mean()) if nb else math.nan,
           "diff": math.nan, "se": math.nan, "df": math.nan, "t": math.nan, "p": math.nan,
           "ci_low": math.nan, "ci_high": math.nan, "note": ""}
    if na == 0 or nb == 0:
        out["note"] = "no value in one arm"
        return out
    out["diff"] = diff = float(a.mean() - b.mean())
    if na < 2 or nb < 2:
        out["note"] = "one seed in an arm: no seed-to-seed variance"
        return out
    va, vb = a.var(ddof=1) / na, b.var(ddof=1) / nb
    se = math.sqrt(va + vb)
    out["se"] = se
    if se == 0:
        out.update(df=float(na + nb - 2), p=1.0 if diff == 0 else 0.0, ci_low=diff, ci_high=diff,
                   t=0.0 if diff == 0 else math.copysign(math.inf, diff),
                   note="no seed-to-seed spread in either arm")
        return out
    # scipy's Welch test (Welch-Satterthwaite df) and its t interval of mean(a) - mean(b); the
    # cases above stay ours: scipy answers NaN with a warning where either arm has n < 2 or
    # where neither arm has any spread.
    with warnings.catch_warnings():
        # An arm whose seeds agree exactly (an integer metric such as a Betti error often
        # does) has variance 0, which scipy reports as "precision loss ... catastrophic
        # cancellation"; the statistic, df and p it returns are still the Welch formula's.
        warnings.filterwarnings("ignore", "Precision loss occurred in moment calculation", RuntimeWarning)
        r = sps.ttest_ind(a, b, equal_var=False)
    ci = r.confidence_interval(level)
    out.update(df=float(r.df), t=float(r.statistic), p=float(r.pvalue), ci_low=float(ci.low), ci_high=float(ci.high))
    return out


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
           "n_seeds_reference", "mean", "reference_mean", "diff", "ci_low", "ci_high", "se", "df", "t", "p", "note",
           "n_images", "images_better", "images_worse", "wilcoxon_p"]
