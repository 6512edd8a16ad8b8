"""What the report says of the prior's samples (the "Synthesis" section), from
eval/samples.parquet and eval/sample_neighbours.parquet (ablate.report.collect reads them;
a grid without `prior:` has neither, and no section).

  metrics       per sample metric and arm: mean and 95 % t interval over seeds (one value per
                trial, the seed as the unit, as every other number of the report), each
                morph_w1.<feature> with its real-vs-real floor beside it
  memorisation  per trial: the share of samples nearer a train image than 95 % of the test
                images are, its chance share and p value, and the flag, in Inception features
                and in pixels (ablate.evaluate.memorisation); a flagged trial gets a sentence
                the report puts among the warnings too: it must not be missed
  questions     Q1s and Q2s (ablate.report.sample_questions)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from ablate.report.collect import Experiment
from ablate.report.metric_names import below_floor, direction, labelled
from ablate.report.questions import Answer, Declared
from ablate.report.render import ci_text, fmt
from ablate.report.sample_columns import FD_FM, MORPH_FLOOR, MORPH_W1, SET_DISTANCES, SHOWN, morph_features
from ablate.report.sample_questions import answer_q1s, answer_q2s, fundus_model, set_size
from ablate.report.stats import t_interval


@dataclass
class Synthesis:
    """The Synthesis section's content (tables as DataFrames of values; the view formats them).

    Args:
        arms: the combinations with judged samples, in grid order.
        shown: arm -> (trial, seed) of its lowest seed: the trial whose contact sheet and
            nearest neighbours the report shows.
        summary: long, per (column, combination): metric (its report name, fid@n), n, mean, sd,
            ci_low, ci_high, note, floor (the mean morph_floor of a morph_w1 row, else NaN).
        metrics: wide text, metric x arm: mean [95% CI] (n=seeds), with the floor beside it.
        memorisation: per trial, the memorisation figures.
        memorising: one sentence per trial flagged as memorising (features or pixels).
        counts: samples, real test and train images per trial, in words.
        q1s, q2s: the questions asked of the samples.
    """
    arms: list[str]
    shown: dict[str, tuple[str, int]]
    summary: pd.DataFrame
    metrics: pd.DataFrame
    memorisation: pd.DataFrame
    memorising: list[str]
    counts: str
    q1s: Answer
    q2s: Answer
    flagged_trials: list[str] = field(default_factory=list)


def percent(x: float) -> str:
    """0.4 -> "40 %"; shares under 1 % with one decimal."""
    if not math.isfinite(x):
        return "—"
    return f"{100 * x:.0f} %" if x == 0 or abs(x) >= 0.01 else f"{100 * x:.1f} %"


def _range(values) -> str:
    v = sorted({int(x) for x in values})
    return str(v[0]) if len(v) == 1 else f"{v[0]}-{v[-1]}"


def sample_summary(samples: pd.DataFrame, arms: list[str]) -> pd.DataFrame:
    """Per sample metric (SHOWN, then each morph_w1.<feature>) and arm: the seeds' mean and 95 %
    t interval (ablate.report.stats.t_interval), the note and the floor."""
    n = set_size(samples)
    cols = [c for c in SHOWN if c in samples.columns] + [MORPH_W1 + f for f in morph_features(samples.columns)]
    rows = []
    for col in cols:
        name = labelled(col, n) if col in SET_DISTANCES else col
        floor_col = MORPH_FLOOR + col[len(MORPH_W1):] if col.startswith(MORPH_W1) else None
        for arm in arms:
            g = samples[samples["combination"] == arm]
            ci = t_interval(g[col].to_numpy(dtype=float))
            floor = (float(g[floor_col].astype(float).mean()) if floor_col and floor_col in g.columns
                     else math.nan)
            rows.append({"column": col, "metric": name, "combination": arm, "direction": direction(col),
                         **ci, "floor": floor, "trials": len(g)})
    return pd.DataFrame(rows, columns=["column", "metric", "combination", "direction", "n", "mean", "sd", "ci_low",
                                       "ci_high", "note", "floor", "trials"])


def metric_note(col: str, name: str, samples: pd.DataFrame) -> str:
    """Why a row may not vote, or what it is measured in."""
    notes = []
    if col in SET_DISTANCES and (floor := below_floor(name)):
        notes.append(f"{floor}: shown, never voted")
    if col == FD_FM:
        fm = fundus_model(samples)
        notes.append(f"in {fm} features" if fm else "no fundus model: not computed")
    if direction(col) is None:
        notes.append("no better direction (~1: spread like the real images); never votes")
    if col.startswith(MORPH_W1):
        notes.append("W1 in real SDs; floor = two halves of the real test images")
    missing = int(samples[col].isna().sum())
    if missing and not (col == FD_FM and not fundus_model(samples)):
        notes.append(f"NaN in {missing} trial(s)")
    return "; ".join(notes)


def metrics_table(summary: pd.DataFrame, arms: list[str], samples: pd.DataFrame) -> pd.DataFrame:
    """metric x arm: mean [95% CI] (n=seeds); a morph_w1 cell ends with its floor."""
    rows = []
    for (col, name), g in summary.groupby(["column", "metric"], sort=False):
        g = g.set_index("combination")
        row = {"metric": name, "better": g["direction"].iloc[0] or "—"}
        for arm in arms:
            r = g.loc[arm].to_dict()
            row[arm] = ci_text(r) + (f"; floor {fmt(r['floor'])}" if math.isfinite(r["floor"]) else "")
        row["note"] = metric_note(str(col), str(name), samples)
        rows.append(row)
    return pd.DataFrame(rows, columns=["metric", "better", *arms, "note"])


def memorisation_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Per trial: samples, chance share, and share / p / flag in features and in pixels."""
    t = samples
    return pd.DataFrame({
        "trial": t["trial"], "combination": t["combination"], "seed": t["seed"], "samples": t["n_samples"],
        "test images": t["n_real"], "train images": t["n_train"], "chance": t["mem_chance"].map(percent),
        "share (features)": t["mem_share"].map(percent), "p (features)": t["mem_p"].astype(float),
        "memorises (features)": t["mem_flag"].astype(bool), "share (pixels)": t["mem_share_px"].map(percent),
        "p (pixels)": t["mem_p_px"].astype(float), "memorises (pixels)": t["mem_flag_px"].astype(bool),
    })


def memorising_sentences(samples: pd.DataFrame) -> list[str]:
    """One sentence per flagged trial and space: the reader must see it, not find it."""
    out = []
    for r in samples.to_dict("records"):
        for flag, share, p, where in (("mem_flag", "mem_share", "mem_p", "in Inception features"),
                                      ("mem_flag_px", "mem_share_px", "mem_p_px", "in pixels")):
            if bool(r[flag]):
                out.append(f"{r['combination']} seed {r['seed']}: {percent(float(r[share]))} of samples are closer to "
                           f"a training image than 95 % of test images are (chance {percent(float(r['mem_chance']))}; "
                           f"{where}, p = {fmt(r[p])}): this prior memorises its training set.")
    return out


def counts_text(samples: pd.DataFrame) -> str:
    return (f"{_range(samples['n_samples'])} samples per trial against {_range(samples['n_real'])} real test images "
            f"({_range(samples['n_train'])} train images searched for memorisation)"
            + (f", at {_range(samples['size'])} px" if "size" in samples.columns else "")
            + (f"; vessel maps by {', '.join(sorted(map(str, samples['segmenter'].dropna().unique())))}"
               if "segmenter" in samples.columns else ""))


def analyse_samples(e: Experiment, declared: Declared) -> Synthesis | None:
    """The section's content; None where the experiment has no sample table (no section)."""
    if e.samples is None:
        return None
    s = e.samples
    arms = [c for c in e.combinations if c in set(s["combination"])]
    shown = {}
    for arm in arms:
        first = s[s["combination"] == arm].sort_values("seed").iloc[0]
        shown[arm] = (str(first["trial"]), int(first["seed"]))
    summary = sample_summary(s, arms)
    flagged = s.loc[s["mem_flag"].astype(bool) | s["mem_flag_px"].astype(bool), "trial"].astype(str).tolist()
    return Synthesis(arms=arms, shown=shown, summary=summary, metrics=metrics_table(summary, arms, s),
                     memorisation=memorisation_table(s), memorising=memorising_sentences(s), counts=counts_text(s),
                     q1s=answer_q1s(e, declared), q2s=answer_q2s(e, declared), flagged_trials=flagged)
