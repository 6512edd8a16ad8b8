"""Warnings about the statistics that a reader must see before the verdicts: sample sizes
of distribution metrics, where the primary metrics were declared, seeds too few to vote,
and a segmenter built on the same filter an edge arm trains on."""

from __future__ import annotations

from ablate.report.collect import Experiment
from ablate.report.compare import combination_terms
from ablate.report.inference import MIN_SEEDS
from ablate.report.metric_names import (
    FD_FLOOR,
    KID_FLOOR,
    below_floor,
    fd_bias_text,
    is_distribution,
    is_kid,
    sample_size,
)


def distribution_warnings(e: Experiment) -> list[str]:
    names = sorted(m for m in e.trial_metrics["metric"].unique() if is_distribution(m))
    out = []
    small = [m for m in names if below_floor(m)]
    if small:
        ns = sorted({n for m in small if (n := sample_size(m)) is not None})
        bias = f" At n = {ns[0]}, {fd_bias_text(ns[0])}." if ns else ""
        out.append(f"SMALL-SAMPLE DISTRIBUTION METRICS: {', '.join(small)} are computed on too few images "
                   f"(FID/FD need n >= {FD_FLOOR:,}, KID n >= {KID_FLOOR:,}).{bias} They are shown, "
                   "but left out of every verdict and of the ranking.")
    spread = set(e.trial_metrics["metric"].unique())
    no_spread = [m for m in names if is_kid(m) and f"subset_sd:{m}" not in spread]
    if no_spread:
        out.append(f"{', '.join(no_spread)}: one value from all images, no spread over subsets (evaluation recorded "
                   "no kid_std), so its noise at this n cannot be judged from the table.")
    return out


def seed_warnings(e: Experiment) -> list[str]:
    done = e.trials[e.trials["status"] == "done"].groupby("combination")["seed"].nunique()
    few = [f"{c} ({int(done.get(c, 0))})" for c in e.combinations if done.get(c, 0) < MIN_SEEDS]
    if not few:
        return []
    return [(f"FEWER THAN {MIN_SEEDS} FINISHED SEEDS: {', '.join(few)}. A comparison needs {MIN_SEEDS} seeds per "
             "arm to estimate seed-to-seed variation; with fewer, the questions answer \"not enough seeds\".")]


def segmenter_overlap(e: Experiment) -> list[str]:
    """The ridge-filter fallback segmenter thresholds a filter response; an arm that trains on
    (or reconstructs) the same filter's response is partly judged on its own objective."""
    if not (e.segmenter and e.segmenter.startswith("ridge")):
        return []
    family = e.segmenter.split(":", 1)[-1].split("+")[0]
    out = []
    for c, terms in combination_terms(e).items():
        hits = [t for t in ("edge", "edge_channel") if terms.get(t, {}).get("family") == family]
        if hits:
            out.append(f"`{c}` trains on the {family} filter response ({' and '.join(h.replace('_', ' ') for h in hits)}) "
                       f"that the ridge segmenter ({e.segmenter}) thresholds into vessel maps: its vessel metrics "
                       "partly measure its own objective. Use the trained U-Net segmenter for Q2.")
    return out


def statistical_warnings(e: Experiment, source: str) -> list[str]:
    """`source`: where the questions' primary metrics came from (ablate.report.questions.Declared)."""
    out = [f"Primary metrics: {source}."] if source.startswith("defaults") else []
    return out + seed_warnings(e) + distribution_warnings(e) + segmenter_overlap(e)
