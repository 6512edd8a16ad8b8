"""What the experiment report says, as text and tables: the warnings a reader must see,
numbers as text, the tables of both documents, the image grid's pictures, the methods.
ablate.report.context gathers them into one ReportContext and ablate.report.document
renders it into EXP/report/index.html (one self-contained file: plots and images are
base64 PNG data URIs, no external CSS, JS or fonts, so it opens offline) and
EXP/report/report.md (the same tables, no pictures) through the Jinja templates in
templates/. `report/build.py` writes them beside the tidy tables as Parquet (see
ablate.report.collect) and the statistics tables:

  report/summary.parquet   per (metric, combination): n, mean, sd, ci_low, ci_high, note, direction
  report/paired.parquet    per (combination, metric) against the baseline: difference, t interval (Hsu's df),
                           p, Holm p (within the comparison), trained-on mark, descriptive Wilcoxon
  report/ranking.parquet   place, combination, mean_rank, place_low/high, p_first, one rank column per metric
  report/questions.parquet every test behind the two answers (columns `question`, `role`, `votes`), and
                           behind Q1s / Q2s (the samples' questions) where the experiment has samples

The image grid (computed by evaluation, `ablate.evaluate.samples`) is drawn here: the
original and its vessel map, and per configuration the reconstruction, its vessel map
and the difference of the two maps (white = vessel in both, red = lost: in the
original's map only, green = spurious: in the reconstruction's map only).
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pandas as pd

from ablate.report.collect import Experiment, is_demo_data
from ablate.report.stats import Analysis, direction, metric_sort_key

CELL_PX = 132  # displayed side of an image-grid cell
GRID_CONFIGS_PER_TABLE = 3  # configurations side by side; more go into further tables (each repeats the original)
GRID_WIDTH_PX = 1240  # what the image columns of one table may take
LOST = (230, 40, 40)
SPURIOUS = (40, 200, 60)


# ---------------------------------------------------------------- warnings a reader must see


def morphology_set(e) -> str:
    """Which vessel-feature definitions the evaluation used (eval/notes.json)."""
    if not e.evaluated:
        return "— (not evaluated)"
    d = e.notes.get("morphology")
    if d is None:
        return "ablate (not recorded: evaluated before the choice existed)"
    return {"ablate": "ablate (ablate.evaluate.morphology)",
            "automorph": "automorph (AutoMorph's M3 definitions, ablate.evaluate.automorph)"}.get(d, str(d))


def report_warnings(e: Experiment) -> list[str]:
    out = []
    if is_demo_data(e.data):
        out.append(f"DEMO DATA: {e.data} is the built-in set of variants of ONE fundus photograph; "
                   "nothing here says anything about fundus images in general.")
    by_comb = e.trials.drop_duplicates("combination").set_index("combination")["stand_ins"]
    for comb, notes in by_comb.items():
        if notes:
            out.append(f"STAND-IN WEIGHTS in `{comb}`: {notes}.")
    if e.segmenter and e.segmenter.startswith("ridge"):
        out.append(f"Vessel maps from the classical ridge-filter fallback ({e.segmenter}), not a trained U-Net; "
                   "vessel metrics are only as good as that segmenter.")
    for s in e.notes.get("skipped", []) or []:
        out.append(f"Skipped in evaluation: {s}")
    for s in e.notes.get("cautions", []) or []:
        out.append(f"VESSEL JUDGE OUT OF RANGE: {s}")
    for s in e.notes.get("resampled", []) or []:
        out.append(f"Test images resampled: {s}")
    fd = [m for m in e.trial_metrics["metric"].unique() if m.startswith("fd_")]
    for m in fd:
        if m != "fd_retfound":
            out.append(f"`{m}` is a Frechet distance in {m[3:]} features, not RETFound's.")
    if e.eval_missing:
        out.append(f"EVALUATION MISSING: {e.eval_missing}")
    if e.seeds and len(e.seeds) == 1:
        out.append("One seed per combination: no confidence intervals (n=1).")
    out.extend(e.warnings)
    return out


# ---------------------------------------------------------------- image grid


def diff_map(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    """RGB: white = both, red = lost (reference only), green = spurious (test only), black = neither."""
    out = np.zeros(ref.shape + (3,), np.uint8)
    out[ref & test] = 255
    out[ref & ~test] = LOST
    out[~ref & test] = SPURIOUS
    return out


def png_data_uri(a: np.ndarray, min_side: int = CELL_PX) -> str:
    from PIL import Image

    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    im = Image.fromarray(a)
    k = max(1, math.ceil(min_side / max(a.shape[:2])))
    if k > 1:
        im = im.resize((a.shape[1] * k, a.shape[0] * k), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


# ---------------------------------------------------------------- numbers as text


def fmt(x, digits: int = 4) -> str:
    if x is None:
        return ""
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not np.isfinite(f):
        return "—"
    if f == 0:
        return "0"
    if abs(f) >= 1e5 or abs(f) < 1e-3:
        return f"{f:.{digits - 1}e}"
    return f"{f:.{digits}g}"


def ci_text(r: dict) -> str:
    if r["n"] == 0:
        return "—"
    if r["n"] == 1:
        return f"{fmt(r['mean'])} (n=1, no CI)"
    return f"{fmt(r['mean'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}] (n={r['n']})"


def summary_wide(e: Experiment, a: Analysis) -> pd.DataFrame:
    """Rows: metric (with its better direction); columns: combinations; cells: mean [95% CI]."""
    s = a.summary
    rows = []
    for m in sorted(s["metric"].unique(), key=metric_sort_key):
        g = s[s["metric"] == m].set_index("combination")
        better = direction(m)
        row = {"metric": m, "better": better if better is not None else "—"}
        for c in e.combinations:
            row[c] = ci_text(g.loc[c].to_dict() | {"n": int(g.loc[c, "n"])}) if c in g.index else "—"
        rows.append(row)
    return pd.DataFrame(rows, columns=["metric", "better"] + e.combinations)


def trials_table(e: Experiment) -> pd.DataFrame:
    cols = {"trial": "trial", "combination": "combination", "seed": "seed", "status": "status", "steps": "steps",
            "loss_terms": "loss terms", "config.model.preset": "preset", "config.data.size": "size",
            "config.train.lr": "lr", "wall_time_s": "wall s", "stand_ins": "stand-ins"}
    t = e.trials[[c for c in cols if c in e.trials.columns]].rename(columns=cols)
    from ablate.report.collect import edge_setting

    t.insert(min(5, len(t.columns)), "edge channel", [edge_setting(r) or "—" for r in e.trials.to_dict("records")])
    return t


PAIRED_COLS = {"combination": "combination", "metric": "metric", "direction": "better", "role": "role",
               "n_seeds": "seeds", "n_seeds_reference": "reference seeds", "mean": "mean",
               "reference_mean": "reference mean", "diff": "difference", "ci_low": "95% CI low",
               "ci_high": "95% CI high", "p": "p (Welch, Hsu df)", "p_holm": "p (Holm)", "verdict": "verdict",
               "trained_on": "trained on", "images_better": "images better (descr.)",
               "images_worse": "images worse (descr.)", "wilcoxon_p": "Wilcoxon p (descr., images)"}


def paired_table(df: pd.DataFrame, reference: bool = False) -> pd.DataFrame:
    if df.empty:
        return df
    cols = dict(PAIRED_COLS)
    if reference:
        cols = {"combination": "combination", "reference": "against", **{k: v for k, v in cols.items() if k != "combination"}}
    return df[[c for c in cols if c in df.columns]].rename(columns=cols)


RANKING_INFO = ("place", "combination", "mean_rank", "place_low", "place_high", "p_first", "n_seeds", "n_metrics", "note")


def ranking_table(a: Analysis) -> pd.DataFrame:
    """Place, combination, mean rank over the ranked metrics, the 95% range of its place and P(first)."""
    r = a.ranking
    if r.empty:
        return r
    out = r[list(RANKING_INFO)].rename(columns={"mean_rank": "mean rank", "n_metrics": "metrics ranked",
                                                "n_seeds": "seeds", "p_first": "P(first)"})
    out.insert(3, "place 95% range", [f"{lo:g}-{hi:g}" for lo, hi in zip(r["place_low"], r["place_high"])])
    return out.drop(columns=["place_low", "place_high"])


def ranks_by_metric(e: Experiment, a: Analysis) -> pd.DataFrame:
    """Rows: ranked metric; columns: combinations; cells: rank (1 = best)."""
    r = a.ranking
    if r.empty:
        return r
    metrics = [c for c in r.columns if c not in RANKING_INFO]
    ranks = r.set_index("combination")[metrics].T.reindex(columns=[c for c in e.combinations if c in set(r["combination"])])
    # Joined side by side, not inserted: a combination may itself be named "metric" or "better".
    head = pd.DataFrame({"metric": metrics, "better": [direction(m) for m in metrics]})
    return pd.concat([head, ranks.reset_index(drop=True)], axis=1)


METHODS = """The unit of inference is the trained model (one seed of one combination), not the test image.
A trial's value of a metric is its mean over the test images (fid@n / kid@n / fd_*@n: one whole-test-set
number on n images; val/*: final validation values); per combination: mean and 95% t interval over seeds.
Two combinations are compared by the difference of their means of trial values, in the metric's own units,
with Welch's t statistic and a 95% t interval on Hsu's degrees of freedom (the smaller arm's seeds - 1).
Why: every trial sees the same test images, so in the crossed design (arm fixed; trial and image random)
the image effects cancel and the mixed-model test of the arm reduces to a t test on trial means, where a
bootstrap over 3 seeds gives intervals far too narrow. Hsu's df, not Welch-Satterthwaite's, because with 3
to 10 seeds the latter let identical arms with unequal seed spread produce 5-11 % wrong headlines at equal
and unequal seed counts; Hsu's keeps every simulated cell at or below 5 %. A pair whose standard error is
at most 1e-9 x max(1, |means|) (its seeds do not vary) gets no test and does not vote. The interval is about training runs on this
test set. The per-image Wilcoxon test on seed-averaged values and the counts of better / worse images are
descriptive columns only. Each question has one or two primary metrics declared in the search space (or
the defaults, said so above); only they vote, the others are secondary. Holm's correction runs over every
voting test of a question (all pairs x primary metrics). A metric that either arm of a comparison trained
on (LPIPS for an LPIPS arm, FD in the same foundation model for a foundation arm, PSNR for an L2 arm,
SSIM for an SSIM arm, edge-filter distances for an edge arm) is marked "trained on" and neither votes nor
ranks. FID/FD below n = 2,000 images and KID below n = 1,000 neither vote nor rank. Per pair: "yes" =
significantly better (Holm p < 0.05) on at least one primary metric and worse on none; "no" = worse on at
least one and better on none; "mixed" = better on one and worse on another; "not enough seeds" = fewer
than 3 finished seeds in an arm; else "not enough evidence". The headline applies the same rule to all the
question's tests: MIXED only when something is significantly better and something significantly worse;
the sentence names the tests that carried it. Simulated identical arms get a wrong verdict in at most 5 % of
experiments, at equal and unequal seed counts and spreads (benchmarks/verdict_calibration.py). Each question
ends with its power line: the smallest true difference (in seed SDs, and in each primary metric's units at
the grid's seed spread) one test detects with at least 80 % probability at Holm's first step.
The ranking uses the declared ranking metrics only (each number once; none a ranked combination trained on):
mean rank over them, with P(first) and the 95% range of each place from 4,000 draws of every combination's
means from their multivariate t sampling distribution over seeds. abs_delta_<feature> = |feature of the
reconstruction's vessel map - feature of the original's map| (the target is the original); a map with none of
what a feature measures (no vessel) reads the feature's least value, so a reconstruction that loses the
vessels scores the original's whole feature, not a missing value."""


def ranking_note(a: Analysis) -> str:
    used = [c for c in a.ranking.columns if c not in RANKING_INFO] if not a.ranking.empty else []
    note = f"Ranked on: {', '.join(used) or 'nothing'} (declared: {', '.join(a.declared.ranking)})."
    if a.ranking_left_out:
        note += f" Left out: {'; '.join(a.ranking_left_out)}."
    return note + " P(first) and the place range come from the seeds' sampling distribution (see Methods)."
