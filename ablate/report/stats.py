"""Statistics of an experiment: per-seed summaries, paired tests against the baseline,
a ranking, and the paper's two questions.

Choices, stated once
--------------------
* Summaries: per (combination, metric), the unit is the seed. A trial's value is
  the mean over test images of a per-image metric (or the whole-test-set number for
  fid / kid / fd_<model>, or the final validation value for val/<...>); over the
  trials (seeds) of a combination: mean, sample SD and the 95% t-interval
  mean +- t(0.975, n-1) * SD / sqrt(n). With one seed: "n=1, no CI".
* Better direction: higher for psnr, ssim, ms_ssim, dice, cldice (and val/psnr,
  val/ssim); lower for lpips (any tag), fid, kid, fd_*, betti0_error, betti1_error,
  abs_delta_<feature> (the reconstruction's vessel feature should equal the
  original's, so |delta| is the distance to the target) and val/loss/*. Other
  metrics get no direction and are left out of ranks and tests.
* Paired tests: the unit is the test image. For each combination, a per-image
  metric is first averaged over its seeds (so seeds need not pair up, and an
  image's several seeds are not counted as independent observations); then the
  per-image differences (combination - reference) are tested with the two-sided
  Wilcoxon signed-rank test, `scipy.stats.wilcoxon(d)` with scipy's defaults
  (zero differences dropped, exact null distribution for small n without ties).
  Images where either side is NaN are dropped. All-zero differences -> p = 1.
  With n non-zero differences the exact test cannot go below p = 2 / 2**n, so
  with 5 or fewer images no result can be significant; the tables say so.
* Multiple testing: Holm's step-down correction across the metrics of one
  comparison (one combination against the baseline: every per-image metric; a
  question: only the question's metrics). Written here, no statsmodels.
* Effect direction: the sign of the median per-image difference, taken in the
  metric's better direction (the mean difference when the median is 0);
  "better"/"worse" only where the Holm-adjusted p < 0.05.
* Ranking: per metric with a direction, combinations ranked by their mean over
  seeds (1 = best, ties share the average rank); a combination's score is its
  mean rank over all ranked metrics (test metrics when evaluated, else val).
* The questions (verdict rule, identical for both): "yes" when the candidate is
  significantly better (Holm p < 0.05) on at least one of the question's metrics
  and significantly worse on none; "no" when worse on at least one and better on
  none; "mixed" when both; "not enough evidence" when none is significant (or too
  few images to ever be); "not in this grid" when the combinations are absent.
  Q1 compares each combination with a `foundation` term (and no `lpips` term)
  directly with the `lpips` combination of the same edge setting, on psnr, ssim,
  ms_ssim, lpips, dice, cldice (those present). Q2 compares each combination with
  an edge channel or `edge` loss term (and neither feature term) with the
  baseline, on |delta average_width|, cldice, betti0_error and dice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from ablate.report.collect import Experiment, edge_setting, stand_in_notes, uses

ALPHA = 0.05
HIGHER = ("psnr", "ssim", "ms_ssim", "dice", "cldice")
LOWER_EXACT = ("fid", "kid", "betti0_error", "betti1_error")
LOWER_PREFIX = ("lpips", "fd_", "abs_delta_")

Q1_METRICS = ("psnr", "ssim", "ms_ssim", "lpips", "dice", "cldice")
Q2_METRICS = ("abs_delta_average_width", "cldice", "betti0_error", "dice")


def direction(metric: str) -> str | None:
    """"higher", "lower", or None (no better direction)."""
    m = metric
    if m.startswith("val/"):
        m = m[len("val/"):]
        if m.startswith("loss/"):
            return "lower"
    if m in HIGHER:
        return "higher"
    if m in LOWER_EXACT or m.startswith(LOWER_PREFIX):
        return "lower"
    return None


def arrow(metric: str) -> str:
    d = direction(metric)
    return {"higher": "↑ higher is better", "lower": "↓ lower is better"}.get(d, "no better direction")


# ---------------------------------------------------------------- building blocks


def t_interval(values, level: float = 0.95) -> dict:
    """Mean, SD and the t-interval of finite `values`; NaN bounds (and a note) for n < 2."""
    v = np.asarray([x for x in np.asarray(values, dtype=float) if np.isfinite(x)])
    n = len(v)
    if n == 0:
        return {"n": 0, "mean": math.nan, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan, "note": "no value"}
    mean = float(v.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan, "note": "n=1, no CI"}
    sd = float(v.std(ddof=1))
    half = float(sps.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half, "note": ""}


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
    """Two-sided Wilcoxon signed-rank test of paired differences `d` (finite values)."""
    d = np.asarray(d, dtype=float)
    nonzero = int(np.count_nonzero(d))
    min_p = min(1.0, 2.0 ** (1 - nonzero)) if nonzero else 1.0
    if nonzero == 0:
        return {"statistic": 0.0, "p": 1.0, "n_nonzero": 0, "min_p": 1.0}
    r = sps.wilcoxon(d)
    return {"statistic": float(r.statistic), "p": float(r.pvalue), "n_nonzero": nonzero, "min_p": min_p}


def seed_averaged(image_metrics: pd.DataFrame, combination: str) -> pd.DataFrame:
    """(image_id x metric) table of one combination, each value averaged over its seeds."""
    sub = image_metrics[image_metrics["combination"] == combination]
    return sub.groupby(["image_id", "metric"])["value"].mean().unstack("metric")


def paired_compare(image_metrics: pd.DataFrame, a: str, b: str, metrics=None) -> pd.DataFrame:
    """Wilcoxon of combination `a` against `b` per metric over test images, Holm across the metrics."""
    wa, wb = seed_averaged(image_metrics, a), seed_averaged(image_metrics, b)
    cols = [m for m in wa.columns if m in wb.columns and direction(m)]
    if metrics is not None:
        cols = [m for m in metrics if m in cols]
    rows = []
    for m in cols:
        pair = pd.concat([wa[m].rename("a"), wb[m].rename("b")], axis=1, join="inner").dropna()
        d = (pair["a"] - pair["b"]).to_numpy()
        sign = 1.0 if direction(m) == "higher" else -1.0
        row = {"combination": a, "reference": b, "metric": m, "direction": direction(m), "n_images": len(d),
               "mean": float(pair["a"].mean()) if len(d) else math.nan,
               "reference_mean": float(pair["b"].mean()) if len(d) else math.nan,
               "mean_diff": float(d.mean()) if len(d) else math.nan,
               "median_diff": float(np.median(d)) if len(d) else math.nan,
               "better_images": int((sign * d > 0).sum()), "worse_images": int((sign * d < 0).sum())}
        if len(d):
            row.update(wilcoxon(d))
        else:
            row.update({"statistic": math.nan, "p": math.nan, "n_nonzero": 0, "min_p": math.nan})
        rows.append(row)
    df = pd.DataFrame(rows, columns=["combination", "reference", "metric", "direction", "n_images", "mean",
                                     "reference_mean", "mean_diff", "median_diff", "better_images", "worse_images",
                                     "statistic", "p", "n_nonzero", "min_p"])
    df["p_holm"] = holm(df["p"].to_numpy()) if len(df) else []
    df["effect"] = [_effect(r) for r in df.to_dict("records")]
    df["significant"] = df["p_holm"] < ALPHA
    df["verdict"] = [_verdict(r) for r in df.to_dict("records")]
    if len(df):
        df = df.iloc[sorted(range(len(df)), key=lambda i: metric_sort_key(df["metric"].iloc[i]))].reset_index(drop=True)
    return df


def _effect(r: dict) -> str:
    sign = 1.0 if r["direction"] == "higher" else -1.0
    x = r["median_diff"] if r["median_diff"] not in (0, 0.0) else r["mean_diff"]
    if not np.isfinite(x) or x == 0:
        return "none"
    return "better" if sign * x > 0 else "worse"


def _verdict(r: dict) -> str:
    if r["n_images"] == 0:
        return "no paired images"
    if r["significant"]:
        return r["effect"]
    if r["n_nonzero"] == 0:
        return "not enough evidence (identical on every image)"
    if r["min_p"] >= ALPHA:
        return f"not enough evidence (n={r['n_nonzero']} non-zero pairs, p cannot go below {r['min_p']:.3g})"
    return "not enough evidence"


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
    ("fidelity", lambda m: m in ("psnr", "ssim", "ms_ssim") or m.startswith("lpips")),
    ("distribution", lambda m: m in ("fid", "kid") or m.startswith("fd_")),
    ("vessel agreement", lambda m: m in ("dice", "cldice", "betti0_error", "betti1_error")),
    ("vessel morphology |delta|", lambda m: m.startswith("abs_delta_")),
    ("validation", lambda m: m.startswith("val/")),
)
_FIRST = ["psnr", "ssim", "ms_ssim", "fid", "kid", "dice", "cldice", "betti0_error", "betti1_error",
          "abs_delta_average_width", "abs_delta_density"]


def metric_group(metric: str) -> str:
    for name, test in GROUPS:
        if test(metric):
            return name
    return "other"


def metric_sort_key(metric: str) -> tuple:
    gi = [g for g, _ in GROUPS].index(metric_group(metric)) if metric_group(metric) != "other" else len(GROUPS)
    return (gi, _FIRST.index(metric) if metric in _FIRST else len(_FIRST), metric)


def ranking(summary: pd.DataFrame, combinations: list[str], evaluated: bool) -> pd.DataFrame:
    """Mean rank over metrics with a direction (test metrics when evaluated, else val/*)."""
    s = summary[summary["direction"].notna() & np.isfinite(summary["mean"].astype(float))]
    s = s[s["source"].isin(["test", "test-set"])] if evaluated else s[s["source"] == "val"]
    ranks = {}
    for metric, g in s.groupby("metric", sort=False):
        if len(g) < 2:
            continue
        key = g["mean"] if direction(metric) == "lower" else -g["mean"]
        ranks[metric] = pd.Series(sps.rankdata(key.to_numpy()), index=g["combination"].to_numpy())
    wide = pd.DataFrame(ranks).reindex(combinations)
    wide = wide[sorted(wide.columns, key=metric_sort_key)]
    out = pd.DataFrame({"combination": combinations, "mean_rank": wide.mean(axis=1).to_numpy(),
                        "n_metrics": wide.notna().sum(axis=1).to_numpy()})
    out = pd.concat([out, wide.reset_index(drop=True)], axis=1)
    out = out.sort_values("mean_rank", kind="stable").reset_index(drop=True)
    out.insert(0, "place", range(1, len(out) + 1))
    return out


def paired_vs_baseline(e: Experiment) -> pd.DataFrame:
    if not e.evaluated:
        return pd.DataFrame()
    present = set(e.image_metrics["combination"])
    frames = [paired_compare(e.image_metrics, c, e.baseline) for c in e.combinations
              if c != e.baseline and c in present and e.baseline in present]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# ---------------------------------------------------------------- the paper's questions


@dataclass
class Answer:
    question: str
    verdict: str  # yes | no | mixed | not enough evidence | not in this grid | evaluation missing
    sentence: str
    tests: pd.DataFrame = field(default_factory=pd.DataFrame)  # the paired tests behind it


def _verdict_of(tests: pd.DataFrame) -> str:
    better = tests["significant"] & (tests["effect"] == "better")
    worse = tests["significant"] & (tests["effect"] == "worse")
    if better.any() and worse.any():
        return "mixed"
    if better.any():
        return "yes"
    if worse.any():
        return "no"
    return "not enough evidence"


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return "nan"
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _evidence(tests: pd.DataFrame) -> str:
    """The numbers behind a verdict: the significant metrics, else the smallest adjusted p."""
    sig = tests[tests["significant"]]
    parts = []
    for r in (sig if len(sig) else tests.nsmallest(min(2, len(tests)), "p_holm")).to_dict("records"):
        parts.append(f"{r['metric']} {_fmt(r['mean'])} vs {_fmt(r['reference_mean'])} "
                     f"({r['effect'] if r['significant'] else 'n.s.'}, Holm p={_fmt(r['p_holm'])}, n={r['n_images']})")
    return "; ".join(parts)


def _combo_rows(e: Experiment) -> dict[str, dict]:
    first = e.trials.drop_duplicates("combination")
    return {r["combination"]: r for r in first.to_dict("records")}


def _pair_sentence(a: str, b: str, verdict: str, tests: pd.DataFrame, rows: dict) -> str:
    caveat = "; ".join(stand_in_notes(rows[a]) + stand_in_notes(rows[b]))
    if verdict == "not enough evidence" and (tests.empty or (tests["n_nonzero"] == 0).all()):
        why = "identical on every test image" if len(tests) else "no paired test images"
    elif verdict == "not enough evidence" and (tests["min_p"] >= ALPHA).all():
        why = (f"too few test images (n={int(tests['n_images'].max())}) for the test to reach p<{ALPHA}; "
               + _evidence(tests))
    else:
        why = _evidence(tests)
    return f"`{a}` vs `{b}`: {verdict} ({why})" + (f" [stand-in: {caveat}]" if caveat else "")


def _combine(question: str, pairs: list[tuple[str, str, str, pd.DataFrame]], rows: dict, lead: str) -> Answer:
    verdicts = {v for _, _, v, _ in pairs}
    verdict = verdicts.pop() if len(verdicts) == 1 else "mixed"  # per pair in the sentence
    body = "; ".join(_pair_sentence(a, b, v, t, rows) for a, b, v, t in pairs)
    sentence = f"{lead}: {verdict.upper()} - {body}."
    tests = pd.concat([t for *_, t in pairs], ignore_index=True)
    return Answer(question, verdict, sentence, tests)


def answer_q1(e: Experiment) -> Answer:
    q = "Q1: does the foundation-model feature loss beat the LPIPS perceptual loss?"
    if not e.evaluated:
        return Answer(q, "evaluation missing", f"{q} Cannot say: {e.eval_missing}")
    rows = _combo_rows(e)
    fm = [c for c in e.combinations if uses(rows[c], "foundation") and not uses(rows[c], "lpips")]
    lp = [c for c in e.combinations if uses(rows[c], "lpips") and not uses(rows[c], "foundation")]
    pairs = []
    for f in fm:
        match = [c for c in lp if edge_setting(rows[c]) == edge_setting(rows[f])]
        if match:
            t = paired_compare(e.image_metrics, f, match[0], _q_metrics(e, Q1_METRICS))
            pairs.append((f, match[0], _verdict_of(t), t))
    if not pairs:
        have = f"foundation: {fm or 'none'}, lpips: {lp or 'none'}"
        return Answer(q, "not in this grid", f"{q} Not in this grid: it needs a combination with a `foundation` term "
                      f"and one with an `lpips` term and the same edge setting ({have}).")
    return _combine(q, pairs, rows, "Q1 (foundation-model term vs LPIPS term, fidelity and vessel overlap)")


def answer_q2(e: Experiment) -> Answer:
    q = "Q2: does the edge term sharpen vessels against the baseline?"
    if not e.evaluated:
        return Answer(q, "evaluation missing", f"{q} Cannot say: {e.eval_missing}")
    rows = _combo_rows(e)

    def has_edge(c):
        return edge_setting(rows[c]) is not None or uses(rows[c], "edge")

    def plain(c):
        return not uses(rows[c], "lpips") and not uses(rows[c], "foundation")

    if has_edge(e.baseline):
        return Answer(q, "not in this grid", f"{q} Not in this grid: the baseline `{e.baseline}` itself has an edge term.")
    edge = [c for c in e.combinations if c != e.baseline and has_edge(c) and plain(c)]
    if not edge:
        return Answer(q, "not in this grid", f"{q} Not in this grid: no combination adds an edge channel or `edge` "
                      f"loss to the baseline `{e.baseline}` without a feature term.")
    pairs = []
    for c in edge:
        t = paired_compare(e.image_metrics, c, e.baseline, _q_metrics(e, Q2_METRICS))
        pairs.append((c, e.baseline, _verdict_of(t), t))
    return _combine(q, pairs, rows, "Q2 (edge term vs baseline; vessel width |delta|, clDice, Betti-0 error, Dice)")


def _q_metrics(e: Experiment, names) -> list[str]:
    present = list(e.image_metrics["metric"].unique())
    out = []
    for n in names:
        out += [m for m in present if m == n or (n == "lpips" and m.startswith("lpips"))]
    return out


# ---------------------------------------------------------------- everything


@dataclass
class Analysis:
    summary: pd.DataFrame
    paired: pd.DataFrame
    ranking: pd.DataFrame
    q1: Answer
    q2: Answer


def analyse(e: Experiment) -> Analysis:
    summary = summarize(e.trial_metrics, e.combinations)
    return Analysis(summary=summary, paired=paired_vs_baseline(e),
                    ranking=ranking(summary, e.combinations, e.evaluated), q1=answer_q1(e), q2=answer_q2(e))
