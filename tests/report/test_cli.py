"""`ablate report` (ablate.report.cli): its help."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.helpers.commands import run_cli
from tests.helpers.experiments import make_exp

# ---------------------------------------------------------------- finding 8: the report's help

@pytest.mark.usefixtures("no_ray_start")
def test_report_help_says_welch_over_seeds():
    """Finding F8 (issue 25): Report help says welch over seeds."""

    r = run_cli("report", "--help")
    assert r.exit_code == 0
    text = " ".join(r.output.replace("│", " ").split())
    assert "Wilcoxon" not in text and "Welch t tests over seeds" in text


def test_cli_print_only(tmp_path):
    import typer

    from ablate.report.cli import report, tensorboard
    from ablate.ui.console import Commands

    exp = make_exp(tmp_path / "e", {"base": {}, "b": {}})
    (exp / "tensorboard").mkdir()
    app = typer.Typer(cls=Commands)  # as ablate/cli.py registers them: its group turns a user error into exit 2
    app.command("report")(report)
    app.command("tensorboard")(tensorboard)
    r = CliRunner().invoke(app, ["tensorboard", str(exp), "--print-only", "--port", "6123"])
    assert r.exit_code == 0 and "--host 127.0.0.1" in r.output and "--port 6123" in r.output and "ssh -N -L" in r.output
    r = CliRunner().invoke(app, ["report", str(exp), "--images", "0"])
    assert r.exit_code == 0, r.output
    assert (exp / "report" / "index.html").is_file()
    r = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "no such experiment folder" in r.output
