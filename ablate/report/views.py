"""Pieces both documents render, shared by the report's sections (ablate.report.context and
ablate.report.synthesis_view): a table as text, a question's answer as text. Texts are raw
(the HTML template escapes them, once); numbers are already text (`fmt`)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ablate.report.render import fmt
from ablate.report.text import plain


@dataclass(frozen=True)
class Table:
    """A table as text. `left`: per column, whether HTML aligns it left (a text column);
    `row_classes`: per row, the HTML class that marks it ("" = none)."""

    columns: list[str]
    left: list[bool]
    rows: list[list[str]]
    row_classes: list[str]

    @property
    def empty(self) -> bool:
        return not self.columns or not self.rows


def text_table(df: pd.DataFrame | None, left: tuple[str, ...] = (), row_class=None) -> Table:
    """`df` as a Table: every cell as report text (`fmt` for what is not a string, then `plain`).

    Args:
        df: the table; None or empty gives an empty Table.
        left: the columns that hold text (aligned left in HTML).
        row_class: row (a dict) -> its HTML class, or None for no classes.
    """
    if df is None or df.empty:
        return Table([], [], [], [])
    cell = lambda v: plain(fmt(v) if not isinstance(v, str) else v)
    # Rows by position: a column name may repeat (a combination named like a heading column).
    rows = [[cell(v) for v in row] for row in df.itertuples(index=False, name=None)]
    classes = [row_class(r) for r in df.to_dict("records")] if row_class else [""] * len(rows)
    return Table(columns=[cell(c) for c in df.columns], left=[c in left for c in df.columns],
                 rows=rows, row_classes=classes)


@dataclass(frozen=True)
class Question:
    verdict: str
    sentence: str
    tests: Table
    judge: str = ""  # a vessel verdict's judge line (report/judge_line.py); "" for the others
    caution: str = ""  # the judge line's caution, for "Read before the numbers"; "" for none


def question_view(q, tests: Table) -> Question:
    """A question's answer (ablate.report.questions.Answer) as text, with its judge line.

    Args:
        q: the answer.
        tests: its tests, already as a Table.
    """
    judge = q.judge.text if q.judge is not None else ""
    caution = q.judge.caution if q.judge is not None else ""
    return Question(plain(q.verdict), plain(q.sentence), tests, plain(judge), plain(caution))


def verdict_class(r: dict) -> str:
    """The HTML class of a comparison row: better / worse (significant), notvoted (grey), or "".

    Args:
        r: the row, with its `verdict` column.
    """
    v = str(r.get("verdict", ""))
    if v in ("better", "worse"):
        return v
    return "notvoted" if v.startswith(("not voted", "secondary")) else ""
