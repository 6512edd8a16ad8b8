"""ablate/runtime/program_command.py: the one wrapper of the one-Train-run programs
(`fm pretrain`, `segmenter train`) adds the shared options and builds RunOptions from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ablate.runtime import ray_output
from ablate.runtime.program_command import SHARED_OPTIONS, RunOptions, train_program
from ablate.ui.console import Commands


@pytest.fixture(autouse=True)
def _keep_ray_output_setting():
    # program_run sets where Ray's output goes for the process: put it back for the next tests.
    before = ray_output.is_verbose()
    yield
    ray_output.set_verbose(before)


@dataclass
class _Done:
    tb_dir: Path
    run_dir: Path


def _program(seen: dict) -> typer.Typer:
    app = typer.Typer(cls=Commands, add_completion=False)

    @app.callback()
    def group() -> None:
        """A group, as `ablate fm` is."""

    @train_program(app)
    def fit(
        data: Path = typer.Option(..., "--data"),
        steps: int = typer.Option(7, "--steps"),
        batch_size: int = typer.Option(4, "--batch-size"),
        lr: float = typer.Option(1e-3, "--lr"),
        *,
        run: RunOptions,
    ) -> _Done:
        seen.update(data=data, run=run)
        typer.echo("made the thing")
        return _Done(Path("/tb/run"), Path("/runs/run"))

    return app


def test_shared_options_reach_run_options_and_the_command_ends_with_where_the_run_is(tmp_path):
    seen: dict = {}
    r = CliRunner().invoke(_program(seen), ["fit", "--data", str(tmp_path), "--steps", "3", "--workers", "2",
                                            "--seed", "5", "--gpus-per-worker", "0.5", "--address", "auto",
                                            "--tb-dir", str(tmp_path / "tb")])
    assert r.exit_code == 0, r.output
    run = seen["run"]
    assert (run.steps, run.batch_size, run.lr) == (3, 4, 1e-3)  # the program's own schedule and defaults
    assert (run.workers, run.seed, run.gpus_per_worker, run.address) == (2, 5, 0.5, "auto")
    assert Path(run.tb_dir) == tmp_path / "tb" and seen["data"] == tmp_path
    lines = r.output.strip().splitlines()
    assert lines[0] == "made the thing"
    assert lines[1:3] == ["tensorboard --logdir /tb/run", "Train run and checkpoints: /runs/run"]
    assert "--verbose shows it here" in lines[3] and not ray_output.is_verbose()  # Ray's output: the run's logs


def test_verbose_sends_ray_output_here_and_help_lists_every_shared_option(tmp_path):
    seen: dict = {}
    app = _program(seen)
    ray_output.set_verbose(False)
    r = CliRunner().invoke(app, ["fit", "--data", str(tmp_path), "--verbose"])
    assert r.exit_code == 0, r.output
    assert ray_output.is_verbose()
    assert "--verbose shows it here" not in r.output
    help_text = CliRunner().invoke(app, ["fit", "--help"], env={"COLUMNS": "200"}).output
    for _, _, option in SHARED_OPTIONS:
        assert option.param_decls[0] in help_text


def test_a_program_without_its_step_schedule_is_refused_when_registered():
    app = typer.Typer()
    with pytest.raises(TypeError, match=r"needs the parameters \['lr'\]"):
        @train_program(app)
        def fit(steps: int = 1, batch_size: int = 1, *, run: RunOptions) -> _Done:
            raise AssertionError("never called")
