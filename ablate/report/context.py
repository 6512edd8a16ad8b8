"""What index.html and report.md say, built once into one ReportContext from the
experiment and its statistics; ablate.report.document renders both documents from it.

Every text here has passed through `plain` (no escape sequences, a traceback as its last
line) and is otherwise raw: the HTML template escapes it (autoescape, once), the Markdown
template escapes what a table cell needs (md_cell). Numbers are already text (`fmt`), so
both documents show the same digits.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from ablate.evaluate.samples import GridColumn, ImageGrid
from ablate.report.collect import Experiment, is_demo_data
from ablate.report.other_data import describe, load_other_datasets, questions_on
from ablate.report.render import (
    CELL_PX,
    GRID_CONFIGS_PER_TABLE,
    GRID_WIDTH_PX,
    LOST,
    METHODS,
    SPURIOUS,
    diff_map,
    morphology_set,
    paired_table,
    png_data_uri,
    ranking_note,
    ranking_table,
    ranks_by_metric,
    summary_wide,
    trials_table,
)
from ablate.report.stats import Analysis
from ablate.report.synthesis_view import SynthesisView
from ablate.report.text import plain
from ablate.report.tuning_view import TuningView
from ablate.report.views import Question, Table, question_view, text_table, verdict_class


@dataclass(frozen=True)
class About:
    """The experiment the report is about (the head of both documents)."""

    experiment: str  # where it is (folder or URI)
    data: str  # the prepared dataset grid.json records
    demo: bool  # the built-in one-photograph demo set
    trials: int
    status: list[tuple[str, int]]  # (status, trials with it)
    combinations: list[str]
    seeds: list[int]
    baseline: str
    baseline_reason: str
    segmenter: str
    morphology: str  # which vessel-feature definitions evaluation used
    test_images: str
    written: str  # ISO time of this report


@dataclass(frozen=True)
class Primaries:
    """The metrics that vote on each question, and where they were declared."""

    q1: list[str]
    q2: list[str]
    source: str


@dataclass(frozen=True)
class NonInferiorityView:
    """The declared non-inferiority check: the rule, then one line per arm."""

    lead: str
    arms: list[str]


@dataclass(frozen=True)
class GridConfig:
    """One configuration's columns of the image grid: per image, its reconstruction, the
    reconstruction's vessel map and the map difference (PNG data URIs)."""

    combination: str
    trial: str
    seed: int
    images: list[tuple[str, str, str]]


@dataclass(frozen=True)
class GridTable:
    image_ids: list[str]
    originals: list[str]  # PNG data URIs, per image
    maps: list[str]
    configs: list[GridConfig]
    cell_px: int


@dataclass(frozen=True)
class ImageGridView:
    segmenter: str
    notes: list[str]
    tables: list[GridTable]
    lost_css: str = f"rgb{LOST}"
    spurious_css: str = f"rgb{SPURIOUS}"


@dataclass(frozen=True)
class OtherSection:
    name: str
    data: str
    description: str
    table: Table
    questions: list[Question] = field(default_factory=list)  # Q1, Q2 asked on this dataset


@dataclass(frozen=True)
class ReportContext:
    """Everything index.html and report.md say, built once (report_context)."""

    grid_name: str
    about: About
    warnings: list[str]
    declared: Primaries
    questions: list[Question]
    trials: Table
    summary: Table
    plots: list[tuple[str, str]]  # (title, PNG data URI)
    baseline: str
    eval_missing: str
    paired: Table
    ranking_note: str
    ranking: Table
    ranks: Table
    image_grid: ImageGridView | None
    other_data: list[OtherSection]
    non_inferiority: NonInferiorityView | None = None  # None: no margin declared, nothing said
    synthesis: SynthesisView | None = None  # None: no samples judged (a grid without `prior:`), no section
    tuning: TuningView | None = None  # None: an untuned grid (grid.json without `tune`), no section
    methods: str = METHODS


def judge_cautions(sections: list[tuple[str, list[Question]]]) -> list[str]:
    """"Read before the numbers" lines: each judge caution beside a vessel verdict, once per
    section (the grid's Q2 and Q2s share the grid's judge; each other dataset has its own)."""
    out: list[str] = []
    for where, questions in sections:
        for q in questions:
            line = f"VESSEL JUDGE UNRELIABLE on {where}: {q.caution}. The verdicts stand; read them with this."
            if q.caution and line not in out:
                out.append(line)
    return out


def image_grid_view(g: ImageGrid) -> ImageGridView:
    """The grid's pictures as PNG data URIs, GRID_CONFIGS_PER_TABLE configurations per table.

    Args:
        g: the image grid evaluation computed (ablate.evaluate.samples.build_image_grid).
    """
    px = min(CELL_PX, GRID_WIDTH_PX // (2 + 3 * GRID_CONFIGS_PER_TABLE) - 6)
    originals = [png_data_uri(o) for o in g.originals]
    maps = [png_data_uri(m) for m in g.maps]
    ids = [plain(i) for i in g.ids]

    def config(c: GridColumn) -> GridConfig:
        refs = c.ref_maps or g.maps
        return GridConfig(plain(c.combination), plain(c.trial), c.seed,
                          [(png_data_uri(c.recon[i]), png_data_uri(c.maps[i]), png_data_uri(diff_map(refs[i], c.maps[i])))
                           for i in range(len(g.ids))])

    k = GRID_CONFIGS_PER_TABLE
    tables = [GridTable(ids, originals, maps, [config(c) for c in g.columns[i:i + k]], px)
              for i in range(0, len(g.columns), k)]
    return ImageGridView(plain(g.segmenter), [plain(n) for n in g.notes], tables)


def report_context(e: Experiment, a: Analysis, plots, grid: ImageGrid | None, warnings: list[str],
                   synthesis: SynthesisView | None = None, tuning: TuningView | None = None) -> ReportContext:
    """What the report says, once, for both documents.

    Args:
        e: the experiment.
        a: its statistics.
        plots: (title, PNG data URI) per plot (ablate.report.plots.metric_plots).
        grid: the image grid, or None where it was left out (the warnings say why).
        warnings: what a reader must see before the numbers.
        synthesis: the Synthesis section (ablate.report.synthesis_view), or None for none.
        tuning: the Tuning section (ablate.report.tuning_view), or None for an untuned grid.
    """
    status = e.trials["status"].value_counts().to_dict()
    about = About(
        experiment=plain(e.location), data=plain(e.data), demo=is_demo_data(e.data), trials=len(e.trials),
        status=[(plain(k), v) for k, v in status.items()], combinations=[plain(c) for c in e.combinations],
        seeds=e.seeds, baseline=plain(e.baseline), baseline_reason=plain(e.baseline_reason),
        segmenter=plain(e.segmenter or "— (not evaluated)"), morphology=plain(morphology_set(e)),
        test_images=str(e.image_metrics["image_id"].nunique()) if e.evaluated and e.image_metrics is not None else "—",
        written=_dt.datetime.now().isoformat(timespec="seconds"))
    voting: dict[str, Any] = {"left": ("combination", "against", "metric", "verdict"), "row_class": verdict_class}
    def question(q) -> Question:
        return question_view(q, text_table(paired_table(q.tests, reference=True), **voting))

    questions = [question(q) for q in (a.q1, a.q2)]
    ni = a.non_inferiority
    non_inferiority = (None if ni is None else
                       NonInferiorityView(plain(ni.lead), [plain(line) for *_, line in ni.arms]))
    others = [OtherSection(plain(o.name), plain(o.notes.get("data", "path not recorded")), plain(describe(o)),
                           text_table(o.table, left=("combination",)),
                           [question(q) for q in questions_on(e, o, a.declared)])
              for o in load_other_datasets(e.exp, e.combinations)]
    cautions = judge_cautions([("the grid's test split", questions + (synthesis.questions if synthesis else []))]
                              + [(f"other dataset {o.name}", o.questions) for o in others])
    return ReportContext(
        grid_name=plain(e.grid.get("name", "?")), about=about, warnings=[plain(w) for w in warnings] + cautions,
        declared=Primaries([plain(m) for m in a.declared.q1], [plain(m) for m in a.declared.q2],
                           plain(a.declared.source)),
        questions=questions, non_inferiority=non_inferiority,
        trials=text_table(trials_table(e), left=("trial", "combination", "status", "loss terms", "preset",
                                                 "edge channel", "stand-ins")),
        summary=text_table(summary_wide(e, a), left=("metric", "better") + tuple(e.combinations)),
        plots=[(plain(t), uri) for t, uri in plots], baseline=plain(e.baseline), eval_missing=plain(e.eval_missing or ""),
        paired=text_table(paired_table(a.paired), left=("combination", "metric", "better", "verdict"),
                          row_class=verdict_class),
        ranking_note=plain(ranking_note(a)), ranking=text_table(ranking_table(a), left=("combination",)),
        ranks=text_table(ranks_by_metric(e, a), left=("metric", "better")),
        image_grid=image_grid_view(grid) if grid is not None and grid.columns else None, other_data=others,
        synthesis=synthesis, tuning=tuning)
