"""Warnings about the statistics that a reader must see before the verdicts: sample sizes
of distribution metrics, where the primary metrics were declared, seeds too few to vote,
metrics that could not be computed for some images (and why), and a segmenter built on the
same filter an edge arm trains on."""

from __future__ import annotations

from ablate.report.collect import Experiment
from ablate.report.compare import combination_terms
from ablate.report.inference import MIN_SEEDS
from ablate.report.metric_names import (
    FD_FLOOR,
    KID_FLOOR,
    below_floor,
    fd_bias_text,
    info,
    is_distribution,
    is_kid,
    may_vote,
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


def not_computable_warnings(e: Experiment) -> list[str]:
    """Per per-image metric that may vote and is NaN for some (trial, image): for how many, and
    why (its declaration's `nan_when`). A trial's mean skips those images, and a trial with none
    left shows "—" in every table and does not vote; the reader is told which it is."""
    if not e.evaluated or e.image_metrics is None:
        return []
    out = []
    for metric, g in e.image_metrics.groupby("metric", sort=False):
        missing = g["value"].isna()
        if not missing.any() or not may_vote(metric):
            continue
        found = info(metric)
        why = found.nan_when if found is not None and found.nan_when else "no reason declared for this metric"
        images, trials = g["image_id"].nunique(), g["trial"].nunique()
        in_every_trial = missing.groupby(g["image_id"]).all()
        if missing.equals(g["image_id"].map(in_every_trial)):  # the same images in every trial: the originals'
            where = f"{int(in_every_trial.sum())} of {images} test images, in every trial"
        else:
            where = (f"{int(missing.sum())} of {len(g)} (trial, image) values, in {g.loc[missing, 'trial'].nunique()} "
                     f"of {trials} trials")
        empty = int((~missing).groupby(g["trial"]).sum().eq(0).sum())  # trials without a single value
        then = ("no trial has a value: it shows — and does not vote" if empty == trials else
                f"a trial's mean is over its other images{f'; {empty} trial(s) with none show —' if empty else ''}")
        out.append(f"{metric}: not computable for {where} (NaN where {why}); {then}.")
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
    return out + seed_warnings(e) + distribution_warnings(e) + not_computable_warnings(e) + segmenter_overlap(e)
