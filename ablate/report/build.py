"""Build a local experiment's report folder: read the experiment, run the statistics,
ask evaluation for the image grid, draw the plots, render HTML and Markdown, and write
every table (atomically, readable by others)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ablate.evaluate.samples import N_IMAGES, build_image_grid, segmenter_used
from ablate.experiment_layout import ExperimentLayout
from ablate.io import atomic_path
from ablate.report.caveats import statistical_warnings
from ablate.report.collect import load_experiment, write_tables
from ablate.report.context import report_context
from ablate.report.document import render_html, render_markdown
from ablate.report.plots import metric_plots, search_plot
from ablate.report.render import report_warnings
from ablate.report.stats import analyse
from ablate.report.synthesis import analyse_samples
from ablate.report.synthesis_view import sample_tests, synthesis_view
from ablate.report.tuning import load_tuning
from ablate.report.tuning_view import tuning_view


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    df = df.copy()
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].map(lambda v: v if v is None or isinstance(v, str) else str(v))
    df.columns = [str(c) for c in df.columns]
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def _write_readable(path: Path, text: str) -> None:
    """Atomic, and readable by others (a browser or web server running as another user)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)


def build_report(exp: str | Path, n_images: int = N_IMAGES, hparams: bool = True,
                 location: str | None = None) -> Path:
    """Build EXP/report/ (index.html, report.md, tables) for a local experiment folder and,
    with `hparams`, the TensorBoard HParams summaries; returns the path of index.html.
    `location`: the name the report gives the experiment (see load_experiment)."""
    e = load_experiment(exp, location)
    tuning = load_tuning(e)  # None: an untuned grid; read first, so a malformed search file stops the report early
    a = analyse(e)
    layout = ExperimentLayout(e.exp)
    out = Path(layout.report)
    out.mkdir(exist_ok=True)
    if hparams:
        from ablate.report.hparams import write_hparams

        try:
            write_hparams(e)
        except Exception as ex:  # noqa: BLE001 - the report itself must still come out
            e.warnings.append(f"TensorBoard HParams summary not written ({type(ex).__name__}: {ex})")
    grid, grid_warnings = build_image_grid(e.exp, e.data, e.trials, e.combinations, e.baseline,
                                           segmenter_used(e.notes, e.segmenter), n_images)
    e.warnings.extend(grid_warnings)
    plots = metric_plots(e, a)
    synthesis = analyse_samples(e, a.declared)  # None without eval/samples.parquet: no section
    warnings = report_warnings(e) + statistical_warnings(e, a.declared.source)
    warnings += [f"MEMORISATION: {m}" for m in (synthesis.memorising if synthesis else [])]
    warnings += tuning.warnings if tuning is not None else []
    write_tables(e, out)
    _write_parquet(a.summary, out / "summary.parquet")
    _write_parquet(a.paired, out / "paired.parquet")
    _write_parquet(a.ranking, out / "ranking.parquet")
    q = [t.assign(question=name) for name, t in (("Q1", a.q1.tests), ("Q2", a.q2.tests)) if not t.empty]
    q += sample_tests(synthesis)
    _write_parquet(pd.concat(q, ignore_index=True) if q else pd.DataFrame({"question": []}), out / "questions.parquet")
    curves = search_plot(tuning) if tuning is not None and any(len(c.trials) for c in tuning.combinations) else ""
    ctx = report_context(e, a, plots, grid, warnings,
                         synthesis_view(e, synthesis, a.declared) if synthesis is not None else None,
                         tuning_view(tuning, curves) if tuning is not None else None)
    _write_readable(Path(layout.report_md), render_markdown(ctx))
    _write_readable(Path(layout.report_html), render_html(ctx))
    return Path(layout.report_html)
