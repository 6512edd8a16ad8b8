"""Options with a closed set of values (--precision, --split, --morphology, --split-missing)
are Enum-typed: a wrong value is refused while the command line is parsed, in the one
`error:` line every bad argument gets (exit 2, the valid values named; they are listed in
--help too), before anything runs (no Ray, no file read, within 5 s); a right one reaches
the library as the plain string it always took."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from ablate.cli import app
from tests.helpers import RAY_STARTS
from tests.helpers.grids import TWO_COMBINATION_GRID, write_grid_file
from tests.helpers.prepared import write_manifest_json


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started"))


REFUSED = [
    (["evaluate", "EXP", "--split", "x"], "error: --split 'x': expected one of test, all"),
    (["evaluate", "EXP", "--morphology", "vesselnet"],
     "error: --morphology 'vesselnet': expected one of ablate, automorph"),
    (["launch", "--grid", "smoke", "--precision", "half"],
     "error: --precision 'half': expected one of auto, bf16, fp16, fp32"),
    (["prepare", "SRC", "--out", "OUT", "--split-missing", "val"],
     "error: --split-missing 'val': expected one of skip, train"),
]


@pytest.mark.bad_input
@pytest.mark.parametrize("args, says", REFUSED, ids=[a[-2] + "=" + a[-1] for a, _ in REFUSED])
def test_a_wrong_choice_is_refused_while_parsing(args, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing is written anywhere, not even a lock
    t0 = time.monotonic()
    r = CliRunner().invoke(app, args)
    assert time.monotonic() - t0 < 5
    assert r.exit_code == 2 and r.output == says + "\n", r.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command, option, shown", [
    (["evaluate"], "--split", "[test|all]"), (["evaluate"], "--morphology", "[ablate|automorph]"),
    (["launch"], "--precision", "[auto|bf16|fp16|fp32]"), (["prepare"], "--split-missing", "[skip|train]"),
])
def test_help_lists_the_choices(command, option, shown):
    r = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if option in ln)
    assert shown in line, line


def test_a_right_choice_reaches_the_library_as_a_plain_string(tmp_path, monkeypatch):
    import ablate.data.shards
    import ablate.evaluate.arguments
    import ablate.pipeline

    seen = {}

    def stop(name):
        def record(*args, **kwargs):
            seen[name] = (args, kwargs)
            raise ValueError("stopped here by the test")
        return record

    monkeypatch.setattr(ablate.pipeline, "launch", stop("launch"))
    monkeypatch.setattr(ablate.evaluate.arguments, "check_evaluation", stop("evaluate"))
    monkeypatch.setattr(ablate.data.shards, "prepare", stop("prepare"))
    runner = CliRunner()
    runner.invoke(app, ["launch", "--grid", "smoke", "--precision", "bf16"])
    runner.invoke(app, ["evaluate", str(tmp_path), "--split", "all", "--morphology", "automorph"])
    runner.invoke(app, ["prepare", str(tmp_path), "--out", str(tmp_path / "out"), "--split-missing", "train"])
    opts = seen["launch"][0][0]
    assert opts.precision == "bf16" and type(opts.precision) is str
    ev = seen["evaluate"][0][0]
    assert (ev.split, ev.morphology) == ("all", "automorph") and type(ev.split) is str and type(ev.morphology) is str
    assert type(seen["prepare"][1]["split_missing"]) is str and seen["prepare"][1]["split_missing"] == "train"
    runner.invoke(app, ["launch", "--grid", "smoke"])
    assert seen["launch"][0][0].precision is None  # not given: every trial keeps its own train.precision


@pytest.mark.bad_input
def test_cli_dry_run_refuses_garbage_vgg16_and_out_of_range_seed_in_one_line(tmp_path, drive32, monkeypatch):
    """Both before Ray (the dry run never starts it), exit 2, one line, no traceback."""
    import ray
    from typer.testing import CliRunner

    from ablate.cli import app

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started"))
    junk = tmp_path / "vgg16.pth"
    junk.write_text("<html>404 Not Found</html>\n")
    monkeypatch.setenv("ABLATE_VGG16_WEIGHTS", str(junk))
    r = CliRunner().invoke(app, ["launch", "--grid", "smoke", "--data", str(drive32), "--dry-run"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: $ABLATE_VGG16_WEIGHTS names {junk}, which is not a torch weights file (neither torch.save's zip "
        "format nor its legacy format): point it at vgg16-397923af.pth"), r.output
    monkeypatch.delenv("ABLATE_VGG16_WEIGHTS")
    grid = write_grid_file(tmp_path, TWO_COMBINATION_GRID.replace("seeds: [0, 1]", "seeds: [0, 18446744073709551616]"))
    r = CliRunner().invoke(app, ["launch", "--grid", str(grid), "--data", str(drive32), "--dry-run"])
    assert r.exit_code == 2 and r.output.strip() == (
        f"error: {grid}: seeds[1]: 18446744073709551616 is not a seed; seeds are integers from 0 to 4294967295 "
        "(2^32-1)"), r.output


@pytest.mark.bad_input
@pytest.mark.usefixtures("no_ray_start")
def test_cli_dry_run_with_a_bad_manifest_is_one_line_no_traceback(data):
    """Finding F7 (issue 20): Cli dry run with a bad manifest is one line no traceback."""

    from typer.testing import CliRunner

    from ablate.cli import app

    write_manifest_json(data, {"format_version": 1, "shards": {}})
    r = CliRunner().invoke(app, ["launch", "--grid", "smoke", "--data", str(data), "--dry-run"])
    assert r.exit_code == 2, r.output
    assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output
    assert r.output.strip().splitlines() == [(f"error: {data / 'manifest.json'}: image_size missing; "
                                              "not a manifest `ablate prepare` wrote (re-run prepare)")]
    assert not RAY_STARTS


@pytest.mark.bad_input
@pytest.mark.usefixtures("no_ray_start")
def test_cli_dry_run_with_concurrent_zero_is_refused(drive32):
    """Finding F2 (issue 20): Cli dry run with concurrent zero is refused."""

    from typer.testing import CliRunner

    from ablate.cli import app

    r = CliRunner().invoke(app, ["launch", "--grid", "smoke", "--data", str(drive32), "--dry-run", "--concurrent", "0"])
    assert r.exit_code == 2 and r.output.strip() == "error: --concurrent must be >= 1, got 0"
    r = CliRunner().invoke(app, ["launch", "--grid", "smoke", "--data", str(drive32), "--dry-run", "--only", ","])
    assert r.exit_code == 2 and "--only ',': no combination named" in r.output
