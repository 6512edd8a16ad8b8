"""Rendering the report (ablate.report.render): markup in names escaped once in HTML and kept in Markdown; the templates ship as package data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ablate.report.publish import write_report
from tests.helpers import REPO
from tests.helpers.experiments import make_exp


@pytest.mark.bad_input
def test_markup_in_names_is_escaped_once_in_html_and_kept_in_markdown(tmp_path):
    """index.html is autoescaped by its Jinja template: a combination or grid name holding
    markup shows as text, escaped once (no &amp;amp;); report.md keeps the text, with `|`
    escaped inside table cells."""
    script, amp = '<script>alert("x")</script>', "a&b|c"
    exp = make_exp(tmp_path / "e", {script: {}, amp: {}}, seeds=(0, 1, 2), name="grid <&>")
    html_path = write_report(exp, n_images=0, hparams=False)
    text, md = html_path.read_text(), html_path.with_name("report.md").read_text()
    assert "<script" not in text.lower() and script not in text and "a&b" not in text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in text and ">a&amp;b|c<" in text
    assert "<title>ablate report: grid &lt;&amp;&gt;</title>" in text
    assert "&amp;amp;" not in text and "&amp;lt;" not in text  # escaped once
    assert "- trials: 6; combinations: " + script + ", a&b|c;" in md  # Markdown: the text as it is
    assert "| a&b\\|c |" in md and "&amp;" not in md and "&lt;" not in md  # a cell's pipe escaped, no HTML entities


def test_report_templates_ship_as_package_data():
    """The templates travel inside the wheel and are read through the package, not the checkout."""
    import tomllib

    from ablate.report.document import TEMPLATES, environment

    root = REPO
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["ablate.report"]
    folder = root / "ablate" / "report" / TEMPLATES
    on_disk = {p.name for p in folder.iterdir() if p.is_file()}
    assert {"report.html", "report.md", "report.css"} <= on_disk
    assert all(any(Path(f"{TEMPLATES}/{name}").match(g) for g in globs) for name in on_disk)
    assert set(environment(html=True).list_templates()) >= {"report.html", "report.md", "report.css"}
    assert environment(html=True).autoescape and not environment(html=False).autoescape


def test_combinations_named_like_the_rank_tables_headings_keep_their_own_columns(tmp_path):
    """A combination may be called `metric` or `better`, the headings of the ranks-by-metric
    table: the report still comes out, with one column per combination in grid order."""
    exp = make_exp(tmp_path / "e", {"base": {}, "metric": {}, "better": {}}, seeds=(0, 1, 2),
                   value=lambda c, s, i: {"psnr": 20 + np.sin(i) + 0.1 * s + (1.0 if c == "better" else 0.0)})
    md = write_report(exp, n_images=0, hparams=False).with_name("report.md").read_text()
    header = "| metric | better | base | metric | better |"
    assert header in md
    psnr = next(line for line in md.splitlines()[md.splitlines().index(header):] if line.startswith("| psnr |"))
    assert psnr.split("|")[2].strip() == "higher" and psnr.split("|")[5].strip() == "1"  # `better` ranks first
