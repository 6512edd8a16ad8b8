"""Statistics of an experiment: per-seed summaries, comparisons against the baseline, a
ranking, and the paper's two questions. The methods, stated once (the report prints
METHODS, a short form of this):

* The unit is the trained model (a trial = one seed of one combination). A trial's value
  of a metric is its mean over the test images (or the whole-test-set number for
  fid / kid / fd_<model>, or the final validation value for val/<...>). Per
  (combination, metric): mean, SD and the 95% t interval over seeds; one seed: no CI.
* Better direction: higher for psnr, ssim, ms_ssim, dice, cldice (and val/psnr, val/ssim);
  lower for lpips, fid, kid, fd_*, kid_*, betti0_error, betti1_error, abs_delta_<feature>
  (the reconstruction's vessel feature should equal the original's) and val/loss/*.
* Comparing two combinations (ablate.report.inference): the difference of their means of
  trial values in the metric's own units, with Welch's statistic and 95% t interval (Hsu's df) over
  seeds. Every trial sees the same test images, so in the crossed design (arm fixed,
  trial and image random) the image effects cancel and the mixed-model test of the arm
  reduces to this t test on trial means; it counts the training run as the random unit
  that it is. The interval is about training runs on this test set. The per-image
  Wilcoxon signed-rank test on seed-averaged values, and the counts of images where a
  combination is better / worse, are descriptive columns only.
* Questions (ablate.report.questions / verdicts): one or two primary metrics per question,
  declared in the search space (`questions:`) or the defaults (Q1: psnr, ssim; Q2:
  border_width_error, cldice); the other metrics are secondary: shown, not voted.
  Holm across every voting test of a question (all pairs x primary metrics). Fewer than 3
  seeds per arm: "not enough seeds". A metric an arm trained on (LPIPS for an LPIPS arm,
  FD in the same foundation model for a foundation arm, PSNR for an L2 arm, ...) is
  marked "trained on" and does not vote. FID / KID / FD are named with their sample size
  (`fid@20`) and do not vote below n = 2,000 (FID/FD) or 1,000 (KID).
  benchmarks/verdict_calibration.py checks that identical arms get a wrong verdict in at
  most 5 % of simulated experiments.
* Non-inferiority (only with a declared `questions.non_inferiority: {metric, margin}`): per
  arm against the baseline, "shown" when the lower end of the one-sided 95% interval of
  the arm's gain (the same Welch statistic and Hsu's df, in the metric's better direction)
  is above -margin; "not decided" below 3 seeds per arm or without seed spread.
* Comparisons against the baseline (every metric, no verdict): the same Welch test per
  metric, Holm across the metrics of one comparison; descriptive, not a question.
* Ranking (ablate.report.ranking): on the declared ranking metrics only, each once, none
  that a ranked combination trained on; mean rank over them, with P(first) and a 95%
  range of each place from draws of the seeds' sampling distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from ablate.report.collect import Experiment
from ablate.report.compare import as_table, compare_pair
from ablate.report.inference import holm  # noqa: F401  (re-exported: the report's Holm)
from ablate.report.metric_names import base_name, direction, is_distribution
from ablate.report.questions import (
    Answer,
    Declared,
    NonInferiority,
    answer_non_inferiority,
    answer_q1,
    answer_q2,
    declared_questions,
)
from ablate.report.ranking import ranked_metrics, ranking
from ablate.report.verdicts import judge


def arrow(metric: str) -> str:
    d = direction(metric)
    if d is None:
        return "no better direction"
    return {"higher": "↑ higher is better", "lower": "↓ lower is better"}[d]


def t_interval(values, level: float = 0.95) -> dict:
    """Mean, SD and the t-interval of finite `values` (scipy.stats.t.interval); NaN bounds
    (and a note) for n < 2.

    Args:
        values: one value per seed; non-finite values are dropped.
        level: the confidence level of the interval.
    """
    v = np.asarray([x for x in np.asarray(values, dtype=float) if np.isfinite(x)])
    n = len(v)
    if n == 0:
        return {"n": 0, "mean": math.nan, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan, "note": "no value"}
    mean = float(v.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan, "note": "n=1, no CI"}
    sd = float(v.std(ddof=1))
    if sd == 0:  # seeds that agree exactly: a zero-width interval (scipy wants scale > 0 and answers NaN)
        return {"n": n, "mean": mean, "sd": sd, "ci_low": mean, "ci_high": mean, "note": ""}
    low, high = sps.t.interval(level, n - 1, loc=mean, scale=sd / math.sqrt(n))
    return {"n": n, "mean": mean, "sd": sd, "ci_low": float(low), "ci_high": float(high), "note": ""}


# ---------------------------------------------------------------- tables


def summarize(trial_metrics: pd.DataFrame, combinations: list[str]) -> pd.DataFrame:
    """One row per (metric, combination): n seeds, mean, SD, 95% CI, note, direction, source."""
    rows = []
    order = {c: i for i, c in enumerate(combinations)}
    for (metric, comb), g in trial_metrics.groupby(["metric", "combination"], sort=False):
        ci = t_interval(g["value"].to_numpy())
        rows.append({"metric": metric, "combination": comb, "source": g["source"].iloc[0], "direction": direction(metric),
                     **ci, "seeds": ",".join(str(s) for s in sorted(g["seed"]))})
    df = pd.DataFrame(rows, columns=["metric", "combination", "source", "direction", "n", "mean", "sd", "ci_low",
                                     "ci_high", "note", "seeds"])
    df["_o"] = df["combination"].map(order)
    df["_m"] = df["metric"].map(metric_sort_key)
    return df.sort_values(["_m", "_o"]).drop(columns=["_o", "_m"]).reset_index(drop=True)


GROUPS = (
    ("fidelity", lambda m: m.removesuffix("_whole") in ("psnr", "ssim", "ms_ssim") or m.startswith("lpips")),
    ("distribution", lambda m: is_distribution(m) or m.startswith("subset_sd:")),
    ("vessel agreement", lambda m: m in ("dice", "cldice", "betti0_error", "betti1_error", "betti0_patch64_error",
                                         "betti1_patch64_error")),
    ("vessel borders", lambda m: m in ("border_width_error", "border_contrast_error", "vessel_sharpness",
                                       "vessel_contrast")),
    ("vessel morphology |delta|", lambda m: m.startswith("abs_delta_")),
    ("validation", lambda m: m.startswith("val/")),
)
_FIRST = ["psnr", "ssim", "ms_ssim", "fid", "kid", "border_width_error", "border_contrast_error", "dice", "cldice",
          "betti0_error", "betti1_error", "abs_delta_vessel_width", "abs_delta_average_width", "abs_delta_density"]


def metric_group(metric: str) -> str:
    for name, test in GROUPS:  # fid@20 as fid
        if test(base_name(metric)):
            return name
    return "other"


def metric_sort_key(metric: str) -> tuple:
    gi = [g for g, _ in GROUPS].index(metric_group(metric)) if metric_group(metric) != "other" else len(GROUPS)
    b = base_name(metric)
    return (gi, _FIRST.index(b) if b in _FIRST else len(_FIRST), metric)


def paired_vs_baseline(e: Experiment) -> pd.DataFrame:
    """Every other combination against the baseline, every comparable metric: Welch on trial
    means, Holm across the metrics of one comparison. Descriptive: no question, no verdict."""
    if not e.evaluated:
        return pd.DataFrame()
    present = set(e.trial_metrics["combination"])
    frames = []
    for c in e.combinations:
        if c == e.baseline or c not in present or e.baseline not in present:
            continue
        # role "primary" so that judge() puts every metric of this comparison into one Holm family
        recs = [dict(r, role="primary") for r in compare_pair(e, c, e.baseline)]
        frames.append(as_table([dict(r, role="all metrics") for r in judge(recs)]))
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    order = {c: i for i, c in enumerate(e.combinations)}
    key = [(order[c], metric_sort_key(m)) for c, m in zip(df["combination"], df["metric"])]
    return df.iloc[sorted(range(len(df)), key=key.__getitem__)].reset_index(drop=True)


# ---------------------------------------------------------------- everything


@dataclass
class Analysis:
    summary: pd.DataFrame
    paired: pd.DataFrame
    ranking: pd.DataFrame
    q1: Answer
    q2: Answer
    declared: Declared
    ranking_left_out: list[str] = field(default_factory=list)  # declared ranking metrics not used, and why
    non_inferiority: NonInferiority | None = None  # None: the search space declared no margin


def analyse(e: Experiment) -> Analysis:
    summary = summarize(e.trial_metrics, e.combinations)
    declared = declared_questions(e)
    metrics, left_out = ranked_metrics(e, declared.ranking) if e.evaluated else ([], ["evaluation missing"])
    return Analysis(summary=summary, paired=paired_vs_baseline(e), ranking=ranking(e, metrics),
                    q1=answer_q1(e, declared), q2=answer_q2(e, declared), declared=declared,
                    ranking_left_out=left_out, non_inferiority=answer_non_inferiority(e, declared))
