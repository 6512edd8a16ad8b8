"""Rendering the experiment report: EXP/report/index.html (one self-contained file: plots
and images are base64 PNG data URIs, no external CSS, JS or fonts, so it opens offline)
and EXP/report/report.md (the same tables, no pictures). `report/build.py` writes them
beside the tidy tables as Parquet (see ablate.report.collect) and the statistics tables:

  report/summary.parquet   per (metric, combination): n, mean, sd, ci_low, ci_high, note, direction
  report/paired.parquet    per (combination, metric) against the baseline: difference, Welch t interval,
                           p, Holm p (within the comparison), trained-on mark, descriptive Wilcoxon
  report/ranking.parquet   place, combination, mean_rank, place_low/high, p_first, one rank column per metric
  report/questions.parquet every test behind the two answers (columns `question`, `role`, `votes`)

The image grid (computed by evaluation, `ablate.evaluate.samples`) is drawn here: the
original and its vessel map, and per configuration the reconstruction, its vessel map
and the difference of the two maps (white = vessel in both, red = lost: in the
original's map only, green = spurious: in the reconstruction's map only).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math

import numpy as np
import pandas as pd

from ablate.evaluate.samples import GridColumn, ImageGrid
from ablate.report.collect import Experiment, is_demo_data
from ablate.report.other_data import describe, load_other_datasets
from ablate.report.stats import Analysis, direction, metric_sort_key
from ablate.report.text import plain, strip_ansi

REPORT_DIR = "report"
CELL_PX = 132  # displayed side of an image-grid cell
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
        row = {"metric": m, "better": {"higher": "higher", "lower": "lower"}.get(direction(m), "—")}
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
               "ci_high": "95% CI high", "p": "p (Welch)", "p_holm": "p (Holm)", "verdict": "verdict",
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
    t = r.set_index("combination")[metrics].T.reindex(columns=[c for c in e.combinations if c in set(r["combination"])])
    t.insert(0, "better", [direction(m) for m in metrics])
    return t.rename_axis("metric").reset_index()


# ---------------------------------------------------------------- HTML / Markdown


CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1500px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}
h3{font-size:15px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;vertical-align:top}
th{background:#f0f0f0} td.l,th.l{text-align:left}
.scroll{overflow-x:auto;max-width:100%}
.warn{background:#fff4e5;border:1px solid #f0a040;padding:8px 12px;margin:10px 0}
.warn li{margin:3px 0}
.answer{border-left:5px solid #888;padding:6px 12px;margin:10px 0;background:#f8f8f8}
.answer.yes{border-color:#2a9d2a} .answer.no{border-color:#d33} .answer.mixed{border-color:#e0a000}
tr.notvoted td{color:#777}
.verdict{font-weight:bold;text-transform:uppercase}
.meta td{text-align:left;border:none;padding:1px 8px 1px 0}
table.imgrid td,table.imgrid th{padding:2px;text-align:center} table.imgrid img{image-rendering:pixelated;display:block}
table.imgrid colgroup{border-left:3px solid #555}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px -2px 10px;border:1px solid #888}
img.plot{max-width:100%;display:block;margin:8px 0}
tr.better td{background:#e6f6e6} tr.worse td{background:#fbe9e9}
"""


def _esc(x) -> str:
    return html.escape(plain(x))  # no escape sequences, a traceback as its last line


def html_table(df: pd.DataFrame, left: tuple[str, ...] = (), cls: str = "", row_class=None) -> str:
    if df is None or df.empty:
        return "<p><i>(empty)</i></p>"
    head = "".join(f'<th class="l">{_esc(c)}</th>' if c in left else f"<th>{_esc(c)}</th>" for c in df.columns)
    body = []
    for i, r in enumerate(df.to_dict("records")):
        rc = row_class(r) if row_class else ""
        cells = "".join(f'<td class="l">{_esc(fmt(v) if not isinstance(v, str) else v)}</td>' if c in left
                        else f"<td>{_esc(fmt(v) if not isinstance(v, str) else v)}</td>" for c, v in r.items())
        body.append(f'<tr class="{rc}">{cells}</tr>' if rc else f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def md_table(df: pd.DataFrame) -> str:
    if df is None or df.empty:
        return "_(empty)_\n"
    esc = lambda v: plain(fmt(v) if not isinstance(v, str) else v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(esc(v) for v in r.values()) + " |" for r in df.to_dict("records")]
    return "\n".join(lines) + "\n"


GRID_CONFIGS_PER_TABLE = 3  # configurations side by side; more go into further tables (each repeats the original)
GRID_WIDTH_PX = 1240  # what the image columns of one table may take


def _image_grid_html(g: ImageGrid) -> str:
    legend = ('<p class="legend">Map difference:<span style="background:#fff"></span>vessel in both'
              f'<span style="background:rgb{LOST}"></span>lost (original only)'
              f'<span style="background:rgb{SPURIOUS}"></span>spurious (reconstruction only)'
              '<span style="background:#000"></span>background in both. '
              f"Vessel maps by {_esc(g.segmenter)}. Each configuration shows its lowest-seed trial.</p>")
    notes = "".join(f"<li>{_esc(n)}</li>" for n in g.notes)
    originals = [png_data_uri(o) for o in g.originals]
    maps = [png_data_uri(m) for m in g.maps]
    k = GRID_CONFIGS_PER_TABLE
    tables = [_image_table(g, g.columns[i:i + k], originals, maps) for i in range(0, len(g.columns), k)]
    return legend + (f"<ul>{notes}</ul>" if notes else "") + "".join(tables)


def _image_table(g: ImageGrid, columns: list[GridColumn], originals: list[str], maps: list[str]) -> str:
    px = min(CELL_PX, GRID_WIDTH_PX // (2 + 3 * GRID_CONFIGS_PER_TABLE) - 6)
    img = lambda alt, uri: f'<td><img alt="{_esc(alt)}" src="{uri}" width="{px}" height="{px}"></td>'  # noqa: E731
    cfg = ['<colgroup class="label"><col></colgroup>', '<colgroup data-config="original" span="2"></colgroup>']
    cfg += [f'<colgroup data-config="{_esc(c.combination)}" span="3"></colgroup>' for c in columns]
    top = ['<th rowspan="2" class="l">test image</th>', '<th colspan="2">original</th>']
    top += [f'<th colspan="3">{_esc(c.combination)}<br><small>{_esc(c.trial)} (seed {c.seed})</small></th>'
            for c in columns]
    sub = ["<th>photo</th><th>vessels</th>"] + ["<th>reconstruction</th><th>vessels</th><th>lost / spurious</th>"
                                                for _ in columns]
    rows = []
    for i, image_id in enumerate(g.ids):
        cells = [f'<td class="l"><small>{_esc(image_id)}</small></td>', img(f"original {image_id}", originals[i]),
                 img("vessel map of the original", maps[i])]
        for c in columns:
            ref = (c.ref_maps or g.maps)[i]
            cells += [img(f"{c.combination} reconstruction", png_data_uri(c.recon[i])),
                      img(f"{c.combination} vessel map", png_data_uri(c.maps[i])),
                      img(f"{c.combination} map difference", png_data_uri(diff_map(ref, c.maps[i])))]
        rows.append(f'<tr data-image="{_esc(image_id)}">{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table class="imgrid">{"".join(cfg)}<thead><tr>{"".join(top)}</tr>'
            f'<tr>{"".join(sub)}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


METHODS = """The unit of inference is the trained model (one seed of one combination), not the test image.
A trial's value of a metric is its mean over the test images (fid@n / kid@n / fd_*@n: one whole-test-set
number on n images; val/*: final validation values); per combination: mean and 95% t interval over seeds.
Two combinations are compared by the difference of their means of trial values, in the metric's own units,
with Welch's t test and 95% t interval (Welch-Satterthwaite df). Why: every trial sees the same test images,
so in the crossed design (arm fixed; trial and image random) the image effects cancel and the mixed-model
test of the arm reduces to this t test on trial means, which is exact under normality even at 3 seeds,
where a bootstrap over 3 seeds gives intervals far too narrow. The interval is about training runs on this
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
question's tests: MIXED only when something is significantly better and something significantly worse.
Simulated identical arms get a wrong verdict in at most 5 % of experiments (benchmarks/verdict_calibration.py).
The ranking uses the declared ranking metrics only (each number once; none a ranked combination trained on):
mean rank over them, with P(first) and the 95% range of each place from 4,000 draws of every combination's
means from their multivariate t sampling distribution over seeds. abs_delta_<feature> = |feature of the
reconstruction's vessel map - feature of the original's map| (the target is the original)."""


def ranking_note(a: Analysis) -> str:
    used = [c for c in a.ranking.columns if c not in RANKING_INFO] if not a.ranking.empty else []
    note = f"Ranked on: {', '.join(used) or 'nothing'} (declared: {', '.join(a.declared.ranking)})."
    if a.ranking_left_out:
        note += f" Left out: {'; '.join(a.ranking_left_out)}."
    return note + " P(first) and the place range come from the seeds' sampling distribution (see Methods)."


def _sig_class(r: dict) -> str:
    v = str(r.get("verdict", ""))
    if v in ("better", "worse"):
        return v
    return "notvoted" if v.startswith(("not voted", "secondary")) else ""


def render_html(e: Experiment, a: Analysis, plots, grid: ImageGrid | None, warnings: list[str]) -> str:
    status = e.trials["status"].value_counts().to_dict()
    grid_name = e.grid.get("name", "?")
    meta = [("experiment", e.location), ("grid", grid_name), ("data", f"{e.data}" + (" (DEMO)" if is_demo_data(e.data) else "")),
            ("trials", f"{len(e.trials)} ({', '.join(f'{v} {k}' for k, v in status.items())})"),
            ("combinations", ", ".join(e.combinations)), ("seeds", ", ".join(map(str, e.seeds))),
            ("baseline", f"{e.baseline} ({e.baseline_reason})"),
            ("segmenter", e.segmenter or "— (not evaluated)"),
            ("morphology definitions", morphology_set(e)),
            ("test images", str(e.image_metrics["image_id"].nunique()) if e.evaluated else "—"),
            ("written", _dt.datetime.now().isoformat(timespec="seconds"))]
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ablate report: {_esc(grid_name)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>Loss ablation report: {_esc(grid_name)}</h1>",
             '<table class="meta">' + "".join(f"<tr><td><b>{_esc(k)}</b></td><td>{_esc(v)}</td></tr>" for k, v in meta)
             + "</table>"]
    if warnings:
        parts.append('<div class="warn" id="warnings"><b>Read before the numbers:</b><ul>' +
                     "".join(f"<li>{_esc(w)}</li>" for w in warnings) + "</ul></div>")
    parts.append('<h2 id="answers">The paper\'s two questions</h2>')
    parts.append(f"<p>Primary metrics: Q1 {_esc(', '.join(a.declared.q1))}; Q2 {_esc(', '.join(a.declared.q2))} "
                 f"({_esc(a.declared.source)}). Rows in grey do not vote.</p>")
    for q in (a.q1, a.q2):
        cls = q.verdict if q.verdict in ("yes", "no", "mixed") else ""
        parts.append(f'<div class="answer {cls}"><span class="verdict">{_esc(q.verdict)}</span> — {_esc(q.sentence)}</div>')
        if not q.tests.empty:
            parts.append(html_table(paired_table(q.tests, reference=True), left=("combination", "against", "metric", "verdict"),
                                    row_class=_sig_class))
    parts.append('<h2 id="trials">Trials</h2>' + html_table(trials_table(e), left=("trial", "combination", "status",
                                                                                     "loss terms", "preset", "edge channel",
                                                                                     "stand-ins")))
    parts.append('<h2 id="summary">Metrics: mean [95% CI] over seeds</h2>'
                 + html_table(summary_wide(e, a), left=("metric", "better") + tuple(e.combinations)))
    parts.append('<h2 id="plots">Plots</h2>' + "".join(
        f'<h3>{_esc(g)}</h3><img class="plot" alt="{_esc(g)}" src="{uri}">' for g, uri in plots))
    parts.append(f'<h2 id="paired">Every metric against the baseline `{_esc(e.baseline)}` (seeds as units; '
                 'descriptive, Holm within each comparison)</h2>')
    if a.paired.empty:
        parts.append(f"<p>{_esc(e.eval_missing or 'No other evaluated combination to compare.')}</p>")
    else:
        parts.append(html_table(paired_table(a.paired), left=("combination", "metric", "better", "verdict"),
                                row_class=_sig_class))
    parts.append('<h2 id="ranking">Ranking (mean rank over the declared ranking metrics, 1 = best)</h2>'
                 + f"<p>{_esc(ranking_note(a))}</p>"
                 + html_table(ranking_table(a), left=("combination",))
                 + "<details><summary>rank per metric</summary>"
                 + html_table(ranks_by_metric(e, a), left=("metric", "better")) + "</details>")
    parts.append('<h2 id="images">Image grid</h2>')
    parts.append(_image_grid_html(grid) if grid is not None and grid.columns else
                 "<p><i>No image grid (see the warnings above).</i></p>")
    for o in load_other_datasets(e.exp, e.combinations):
        parts.append(f'<h2 id="data-{_esc(o.name)}">Other dataset: {_esc(o.name)} '
                     f'({_esc(o.notes.get("data", "path not recorded"))})</h2><p>{_esc(describe(o))}</p>'
                     + html_table(o.table, left=("combination",)))
    parts.append(f'<h2 id="methods">Methods</h2><p>{_esc(METHODS)}</p></body></html>')
    return strip_ansi("\n".join(parts))


def render_markdown(e: Experiment, a: Analysis, warnings: list[str]) -> str:
    grid_name = e.grid.get("name", "?")
    out = [f"# Loss ablation report: {grid_name}\n",
           f"- experiment: `{e.location}`", f"- data: `{e.data}`" + (" (DEMO)" if is_demo_data(e.data) else ""),
           f"- trials: {len(e.trials)}; combinations: {', '.join(e.combinations)}; seeds: {', '.join(map(str, e.seeds))}",
           f"- baseline: `{e.baseline}` ({e.baseline_reason})", f"- segmenter: {e.segmenter or '— (not evaluated)'}",
           f"- morphology definitions: {morphology_set(e)}", ""]
    if warnings:
        out += ["## Read before the numbers\n"] + [f"- {plain(w)}" for w in warnings] + [""]
    out.append("## The paper's two questions\n")
    out.append(f"Primary metrics: Q1 {', '.join(a.declared.q1)}; Q2 {', '.join(a.declared.q2)} ({a.declared.source}).\n")
    for q in (a.q1, a.q2):
        out.append(f"**{q.verdict.upper()}** — {q.sentence}\n")
        if not q.tests.empty:
            out.append(md_table(paired_table(q.tests, reference=True)))
    out += ["## Trials\n", md_table(trials_table(e)),
            "## Metrics: mean [95% CI] over seeds\n", md_table(summary_wide(e, a)),
            f"## Every metric against the baseline `{e.baseline}` (seeds as units; descriptive, Holm within each "
            "comparison)\n",
            md_table(paired_table(a.paired)) if not a.paired.empty else f"{e.eval_missing or 'Nothing to compare.'}\n",
            "## Ranking (mean rank over the declared ranking metrics, 1 = best)\n", ranking_note(a) + "\n",
            md_table(ranking_table(a)),
            "Rank per metric:\n", md_table(ranks_by_metric(e, a))]
    for o in load_other_datasets(e.exp, e.combinations):
        out += [f"## Other dataset: {o.name} ({plain(o.notes.get('data', 'path not recorded'))})\n",
                plain(describe(o)) + "\n", md_table(o.table)]
    out += ["## Methods\n", METHODS.replace("\n", " ") + "\n",
            "Plots and the image grid are in index.html.\n"]
    return strip_ansi("\n".join(out))  # whatever else the experiment's files hold: no escape sequences
