"""Reading an experiment for the report (ablate.report.collect): wrong-shaped notes.json and grid.json are said, and the report goes on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ablate.config import ConfigError
from ablate.report.collect import ReportError, load_experiment
from ablate.report.publish import write_report
from tests.helpers.experiments import make_exp

# ---------------------------------------------------------------- finding 11: notes.json and grid.json


def _exp(tmp_path) -> Path:
    from tests.helpers.experiments import make_exp

    return make_exp(tmp_path / "e", {"base": {}, "l2": {}})


@pytest.mark.parametrize("notes,message", [
    ([], "top level is a list, expected an object"),
    ({"skipped": "LPIPS not computed"}, "skipped is a string, expected a list"),
    ({"skipped": 5}, "skipped is an integer, expected a list"),
    ({"segmenter": {"name": "ridge"}}, "segmenter is an object, expected a string"),
], ids=["list", "skipped_string", "skipped_number", "segmenter_object"])
@pytest.mark.bad_input
@pytest.mark.usefixtures("no_ray_start")
def test_wrong_shaped_notes_json_report_goes_on_and_says_so(notes, message, tmp_path):
    """Finding F11 (issue 20): Wrong shaped notes json report goes on and says so."""

    from typer.testing import CliRunner

    from ablate.cli import app

    exp = _exp(tmp_path)
    (exp / "eval" / "notes.json").write_text(json.dumps(notes))
    r = CliRunner().invoke(app, ["report", str(exp), "--images", "0", "--no-hparams"])
    assert r.exit_code == 0, r.output
    said = f"{exp / 'eval' / 'notes.json'}: {message}; left out, so which segmenter"
    assert f"warning: {said}" in r.output and "Traceback" not in r.output  # on the console
    md = (exp / "report" / "report.md").read_text()
    assert said in md and "Skipped in evaluation: L\n" not in md  # in the report; no per-letter warnings


@pytest.mark.bad_input
@pytest.mark.usefixtures("no_ray_start")
def test_other_dataset_notes_of_the_wrong_shape_said_in_its_section(tmp_path):
    """Finding F11 (issue 20): Other dataset notes of the wrong shape said in its section."""

    from ablate.report.publish import write_report

    exp = _exp(tmp_path)
    other = exp / "eval" / "datasets" / "camera2"
    other.mkdir(parents=True)
    shutil.copy(exp / "eval" / "per_image.parquet", other / "per_image.parquet")
    (other / "notes.json").write_text(json.dumps({"images": "twelve"}))
    md = write_report(exp, n_images=0, hparams=False).with_name("report.md").read_text()
    section = md.split("## Other dataset: camera2")[1]
    assert f"WARNING: {other / 'notes.json'}: images is a string, expected an integer >= 0; left out" in section


@pytest.mark.bad_input
@pytest.mark.usefixtures("no_ray_start")
def test_grid_json_of_the_wrong_shape(tmp_path):
    """Finding F11 (issue 20): The report goes on (order from results.parquet, said); a launch into the folder refuses it."""
    from ablate.config import find_grid, load_grid
    from ablate.report.collect import load_experiment
    from ablate.train.experiment import check_experiment_folder

    exp = _exp(tmp_path)
    (exp / "grid.json").write_text(json.dumps({"name": "synthetic", "trials": ["base-s0"]}))
    e = load_experiment(exp)
    assert any("grid.json: trials is a list, expected an object; left out" in w for w in e.warnings)
    with pytest.raises(ConfigError, match=r"grid.json: trials is a list, expected an object; not a grid record"):
        check_experiment_folder(exp, load_grid(find_grid("smoke")), resume=True)


@pytest.mark.bad_input
def test_missing_files(tmp_path):
    with pytest.raises(ReportError, match=r"results\.parquet.*ablate launch"):
        load_experiment(tmp_path)
    exp = make_exp(tmp_path / "e", {"base": {}, "b": {}}, evaluated=False)
    e = load_experiment(exp)
    assert not e.evaluated and "ablate evaluate" in e.eval_missing
    path = write_report(exp, n_images=0, hparams=False)
    md = path.with_name("report.md").read_text()
    assert "EVALUATION MISSING" in md and "val/psnr" in md and "Cannot say" in md
