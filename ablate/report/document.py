"""The report's two documents from one ReportContext (ablate.report.render.report_context),
through the Jinja templates in ablate/report/templates/ (package data: they ship in the
wheel and are read with PackageLoader, so an installed `ablate` renders reports too):

  report.html -> EXP/report/index.html  autoescape on: each value escaped once, by Jinja
  report.md   -> EXP/report/report.md   no HTML escaping; table cells through md_cell
  report.css  -> inlined into index.html's <style> (no file beside it: it opens offline)
"""

from __future__ import annotations

from functools import cache

import jinja2

from ablate.report.context import ReportContext
from ablate.report.text import strip_ansi

TEMPLATES = "templates"  # the folder inside ablate.report


def md_cell(text) -> str:
    """A Markdown table cell: `|` escaped (it would end the cell), line breaks as spaces (they
    would end the row). The only escaping report.md applies.

    Args:
        text: the cell's text.
    """
    return str(text).replace("|", "\\|").replace("\n", " ")


@cache
def environment(html: bool) -> jinja2.Environment:
    """The Jinja environment of one of the two documents.

    Args:
        html: True for index.html (autoescape on), False for report.md (no HTML escaping).
    """
    env = jinja2.Environment(loader=jinja2.PackageLoader("ablate.report", TEMPLATES), autoescape=html,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=not html)
    env.filters["md_cell"] = md_cell
    return env


def _render(name: str, ctx: ReportContext, html: bool) -> str:
    text = environment(html).get_template(name).render(vars(ctx))
    return strip_ansi(text)  # whatever else the experiment's files hold: no escape sequences


def render_html(ctx: ReportContext) -> str:
    """EXP/report/index.html's text.

    Args:
        ctx: what the report says (report_context).
    """
    return _render("report.html", ctx, html=True)


def render_markdown(ctx: ReportContext) -> str:
    """EXP/report/report.md's text.

    Args:
        ctx: what the report says (report_context).
    """
    return _render("report.md", ctx, html=False)
