"""The ranking: declared metrics only, each number once, with the uncertainty of each place.

Which metrics: the search space's `questions.ranking` (default: Q1's and Q2's primary
metrics), minus any that a ranked combination trained on (ablate.report.trained_on; the
metric is dropped for everyone rather than ranking the others on it, so every
combination is ranked on the same metrics), minus distribution metrics below their
sample-size floor, and with duplicates (abs_delta_components = betti0_error) once.

Point ranking: per metric, combinations ranked by their mean over seeds (1 = best, ties
share the average rank); a combination's score is its mean rank over those metrics.

Uncertainty: DRAWS simulated repeats of the whole experiment. In each, a combination's
vector of metric means is drawn from the multivariate t with k - 1 degrees of freedom
centred on its means over its k seeds, scaled by their covariance / k (the sampling
distribution behind the t intervals of the summary table, with the metrics' seed-to-seed
correlation kept: a seed that is bad in PSNR tends to be bad in SSIM). The ranking is
redone in each draw; per combination: P(first place) and the 2.5-97.5 % range of its
place. Not a bootstrap over seeds: with 3 seeds a bootstrap has 10 distinct resamples and
understates the spread. A combination with one seed has no covariance and is held at its
mean (its place interval then reflects only the others' uncertainty; the table says so).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from ablate.report.collect import Experiment
from ablate.report.compare import TEST_SOURCES, combination_terms, matches
from ablate.report.metric_names import below_floor, canonical, direction
from ablate.report.trained_on import trained_on

DRAWS = 4000


def ranked_metrics(e: Experiment, declared: list[str]) -> tuple[list[str], list[str]]:
    """(metrics to rank on, "metric: why not" for declared ones left out)."""
    tm = e.trial_metrics
    present = list(tm.loc[tm["source"].isin(TEST_SOURCES), "metric"].unique())
    terms = combination_terms(e)
    used, left_out, seen = [], [], set()
    for d in declared:
        found = [m for m in present if matches(m, [d])]
        if not found:
            left_out.append(f"{d}: not in this experiment")
            continue
        for m in found:
            who = [f"`{c}` ({why})" for c in e.combinations if (why := trained_on(m, terms[c]))]
            floor = below_floor(m)
            if who:
                left_out.append(f"{m}: trained on by {', '.join(who)}")
            elif floor:
                left_out.append(f"{m}: below sample-size floor ({floor})")
            elif direction(m) is None:
                left_out.append(f"{m}: no better direction")
            elif canonical(m) in seen:
                left_out.append(f"{m}: the same number as {canonical(m)}")
            else:
                seen.add(canonical(m))
                used.append(m)
    return used, left_out


def _ranks(values: np.ndarray, higher: np.ndarray) -> np.ndarray:
    """Ranks (1 = best) along axis -2 (combinations) of (..., C, P) values, ties sharing the
    average rank (combinations whose seeds all agree tie in every draw); NaN stays NaN."""
    key = np.where(higher, -values, values)
    key = np.where(np.isnan(key), np.inf, key)
    return np.where(np.isnan(values), np.nan, sps.rankdata(key, axis=-2))


def draw_means(seeds: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """(draws, P) multivariate-t draws of the mean of (k, P) seed values (complete rows)."""
    k, p = seeds.shape
    mean = seeds.mean(0)
    if k < 2:
        return np.broadcast_to(mean, (draws, p)).copy()
    resid = (seeds - mean) / np.sqrt(k - 1)  # R^T R = sample covariance S
    g = rng.standard_normal((draws, k)) @ resid  # ~ N(0, S)
    scale = np.sqrt((k - 1) / rng.chisquare(k - 1, size=(draws, 1)))
    return mean + g * scale / np.sqrt(k)


def ranking(e: Experiment, metrics: list[str], draws: int = DRAWS, seed: int = 0) -> pd.DataFrame:
    """place, combination, mean_rank, place_low, place_high, p_first, n_seeds, n_metrics, note,
    and one rank column per metric; empty when nothing can be ranked."""
    tm = e.trial_metrics[e.trial_metrics["source"].isin(TEST_SOURCES) & e.trial_metrics["metric"].isin(metrics)]
    if not metrics or tm.empty:
        return pd.DataFrame()
    wide = tm.pivot_table(index=["combination", "seed"], columns="metric", values="value").reindex(columns=metrics)
    combos = [c for c in e.combinations if c in wide.index.get_level_values(0)]
    higher = np.array([direction(m) == "higher" for m in metrics])
    rng = np.random.default_rng(seed)
    means = np.full((len(combos), len(metrics)), np.nan)
    drawn = np.full((draws, len(combos), len(metrics)), np.nan)
    notes, n_seeds = [], []
    for i, c in enumerate(combos):
        x = wide.loc[c].to_numpy(dtype=float)
        means[i] = np.nanmean(x, axis=0)
        complete = x[~np.isnan(x).any(axis=1)]
        n_seeds.append(len(complete))
        cols = ~np.isnan(means[i])
        if len(complete):
            drawn[:, i, cols] = draw_means(complete[:, cols], draws, rng)
        notes.append("one seed: held at its mean" if len(complete) == 1 else
                     ("" if len(complete) else "no seed with every ranked metric"))
    point = _ranks(means, higher)
    mean_rank = np.nanmean(point, axis=1)
    sampled = np.nanmean(_ranks(drawn, higher), axis=2)  # (draws, C)
    places = _ranks(sampled[..., None], np.array([False]))[..., 0]
    out = pd.DataFrame({"combination": combos, "mean_rank": mean_rank,
                        "place_low": np.percentile(places, 2.5, axis=0),
                        "place_high": np.percentile(places, 97.5, axis=0),
                        "p_first": (places == 1).mean(axis=0), "n_seeds": n_seeds,
                        "n_metrics": (~np.isnan(point)).sum(axis=1), "note": notes})
    out = pd.concat([out, pd.DataFrame(point, columns=metrics)], axis=1)
    out = out.sort_values("mean_rank", kind="stable").reset_index(drop=True)
    out.insert(0, "place", range(1, len(out) + 1))
    return out
