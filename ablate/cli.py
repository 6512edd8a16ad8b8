"""The `ablate` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ablate.experiment_layout import ExperimentLayout
from ablate.specs import Choice, EvalSplit, Morphology, PrecisionSetting, SplitMissing
from ablate.ui.console import Commands, fail

# Commands: the one place a user error (ablate.errors.AblateError) from any command becomes `error: ...`
# (exit status 2), and where the library's log lines are routed to the terminal.
app = typer.Typer(cls=Commands, add_completion=False, no_args_is_help=True,
                  help="Loss-function ablations for autoencoder-based retinal image synthesis, on Ray.")


def choice_option(default: Choice | None, option: str, vocabulary: type[Choice], help_text: str):
    """A typer option taking one of `vocabulary`'s values, listed in --help. Any other value is
    refused while the command line is parsed (before a file is read or Ray starts), in the one
    `error:` line (exit 2) every bad argument gets, naming the valid values.

    Args:
        default: the member used when the option is not given (None: not given).
        option: the option's name, e.g. "--split".
        vocabulary: its Enum of values (ablate.specs).
        help_text: the --help text.
    """
    names = [m.value for m in vocabulary]

    def parse(value):
        if isinstance(value, vocabulary):  # the default
            return value
        try:
            return vocabulary(value)
        except ValueError:
            fail(f"{option} {value!r}: expected one of {', '.join(names)}")

    return typer.Option(default, option, parser=parse, metavar=f"[{'|'.join(names)}]", help=help_text)


from ablate.fm.cli import app as fm_app  # typer only here; torch and Ray load inside the command

app.add_typer(fm_app, name="fm", help="Our own fundus foundation model (MAE), for when RETFound is not at hand.")

from ablate.segmenter.cli import app as segmenter_app

app.add_typer(segmenter_app, name="segmenter", help="The vessel segmenter evaluation uses: train it on DRIVE, check it.")

from ablate.weights.cli import app as weights_app

app.add_typer(weights_app, name="weights", help="Pretrained networks: list (present? verified?), fetch, verify.")


@app.command()
def prepare(
    src: Path | None = typer.Argument(None, help="folder of fundus photographs (DRIVE layout, plain or nested "
                                         "folder, or images/ + mask folders); or give --index"),
    out: str = typer.Option(..., "--out", help="folder, or URI (s3://bucket/prefix), for the Parquet shards and manifest.json"),
    size: int = typer.Option(256, "--size", help="side of the square output images, px"),
    seed: int = typer.Option(0, "--seed", help="seed of the train/val/test split where the dataset has none"),
    max_pixels: int = typer.Option(60_000_000, "--max-pixels", help="reject images whose header claims more "
                                   "pixels, without decoding them (default 60 MP, above every fundus camera; "
                                   "files over 8 bytes a pixel of it are rejected unread)"),
    split_missing: SplitMissing = choice_option(SplitMissing.skip, "--split-missing", SplitMissing,
                                                help_text="images a present split.csv does not list: 'skip' (listed "
                                                "in rejects.csv, the split stays exactly as written) or 'train'; "
                                                "recorded in manifest.json"),
    index: Path | None = typer.Option(None, "--index", help="CSV or Parquet file listing the images instead of "
                                         "SRC: column path (relative to the file's folder), optional split, fov, vessel; "
                                         "any other column is a label, kept in the shards"),
    cpus: int | None = typer.Option(None, "--cpus", help="CPUs to use (default: every core here, or the cluster's)"),
    address: str | None = typer.Option(None, "--address", help="join a running Ray cluster, e.g. 'auto' "
                                          "(its nodes must read the source files at the same paths)"),
    work: Path | None = typer.Option(None, "--work", help="folder for the per-file results that let an interrupted "
                                        "prepare resume (default: OUT.work beside a local OUT); a new path "
                                        "or an empty folder, outside OUT and SRC"),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="go on with an --index most of whose "
                                       "files do not exist (refused otherwise, before any work)"),
    replace: bool = typer.Option(False, "--replace", help="replace the dataset in --out even by one of under "
                                 "half its images (refused otherwise)"),
) -> None:
    """Preprocess fundus photographs into Parquet shards, on every core (or a Ray cluster).

    A changed dataset replaces --out whole once it is complete: a failure leaves the
    previous one as it was. An interrupted run resumes where it stopped when re-run."""
    import functools

    from ablate.data.shards import prepare as run_prepare
    from ablate.ui.progress import Progress

    r = run_prepare(src, out, size=size, seed=seed, max_pixels=max_pixels, split_missing=split_missing.value,
                    index=index, cpus=cpus, address=address, work=work, allow_missing=allow_missing,
                    replace=replace,
                    progress=functools.partial(Progress, "prepare", unit="files", stream=sys.stderr, every_pct=None,
                                               rate_unit="images/s"))
    if r.resumed:
        typer.echo(f"resumed: {r.resumed} file(s) already prepared by an interrupted run were skipped "
                   f"(their saved results checked against their checksums); {r.processed} prepared now")
    for note in r.notes:
        typer.echo(note)
    state = "written" if r.changed else "unchanged (identical input)"
    typer.echo(f"{r.out}: {sum(r.counts.values())} images {r.counts}, {state}")
    if r.rejects:
        where = f"{r.out}/rejects.csv" if isinstance(r.out, str) else r.out / "rejects.csv"
        typer.echo(f"{len(r.rejects)} file(s) rejected, listed in {where}:")
        for f, why in r.rejects[:10]:
            typer.echo(f"  {f}: {why}")
    typer.echo(f"next: ablate launch --grid smoke --data {r.out}")


@app.command()
def launch(
    grid: str = typer.Option(..., "--grid", help="search space: a name under search_spaces/ or a .yaml path"),
    data: str | None = typer.Option(None, "--data", help="prepared dataset folder or URI, e.g. s3://bucket/data (default: built-in one-eye demo)"),
    out: str | None = typer.Option(None, "--out", help="experiment folder or URI, e.g. s3://bucket/exp (default: runs/<grid name>)"),
    workers: int = typer.Option(1, "--workers", help="Ray Train workers (DDP ranks) per trial"),
    cpus_per_worker: float | None = typer.Option(None, "--cpus-per-worker", help="default: fit the machine, one CPU left for Ray Data"),
    threads_per_worker: int | None = typer.Option(None, "--threads-per-worker", help="torch threads per worker (default: its CPUs, rounded)"),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker"),
    concurrent: int | None = typer.Option(None, "--concurrent", help="trials at a time (default: as many as fit)"),
    address: str | None = typer.Option(None, "--address", help="join a running Ray cluster, e.g. 'auto'"),
    steps: int | None = typer.Option(None, "--steps", help="override train.steps of every trial"),
    epochs: int | None = typer.Option(None, "--epochs", help="train whole epochs instead of steps"),
    size: int | None = typer.Option(None, "--size", help="override data.size (px) of every trial"),
    precision: PrecisionSetting | None = choice_option(None, "--precision", PrecisionSetting,
                                                          help_text="override train.precision of every trial: auto "
                                                          "(bf16 on CUDA, fp32 on the CPU), bf16, fp16 (CUDA) or fp32"),
    compile: bool | None = typer.Option(None, "--compile/--no-compile", help="override train.compile "
                                           "(torch.compile the autoencoder; off by default)"),
    max_failures: int = typer.Option(2, "--max-failures", help="worker-group restarts per trial, from its last checkpoint"),
    trial_retries: int = typer.Option(1, "--trial-retries", help="whole-trial retries by Tune once worker restarts are spent"),
    resume: bool = typer.Option(False, "--resume", help="continue the grid in --out: finished trials kept, the rest resumed"),
    evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="evaluate finished trials on the test split"),
    segmenter: str | None = typer.Option(None, "--segmenter", help="vessel segmenter for evaluation: a U-Net file or 'ridge'"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the trial table and exit"),
    estimate: bool = typer.Option(False, "--estimate", help="time a few steps of each distinct configuration "
                                  "here and print the grid's expected wall time, then exit (no training)"),
    only: str | None = typer.Option(None, "--only", help="run only these combinations, e.g. base,edge; "
                                       "a later launch of others into the same --out adds them"),
    search_only: bool = typer.Option(False, "--search-only", help="tuned arms (a search space with tune:): stop "
                                     "after stage 1, the searches on train/val; --resume later runs stage 2"),
    fm_steps: int = typer.Option(2000, "--fm-steps", help="steps of the fundus MAE stage (foundation: auto "
                                 "with neither RETFound nor a fundus MAE present)"),
    verbose: bool = typer.Option(False, "--verbose", help="show Ray's own output here (Tune's tables, Ray Data "
                                 "bars, worker logs) instead of only in EXP/logs/"),
) -> None:
    """Run a loss-combination grid: Ray Tune trials, each a Ray Train run."""
    from ablate.runtime import ray_output

    ray_output.set_verbose(verbose)
    from ablate.pipeline import LaunchOptions
    from ablate.pipeline import launch as run_launch

    names = tuple(c.strip() for c in only.split(",") if c.strip()) if only is not None else ()
    if only is not None and not names:  # `--only ""` would otherwise quietly launch every combination
        fail(f"--only {only!r}: no combination named; give e.g. --only base,edge")
    opts = LaunchOptions(grid=grid, data=data, out=out,
                         workers=workers, cpus_per_worker=cpus_per_worker, threads_per_worker=threads_per_worker,
                         gpus_per_worker=gpus_per_worker,
                         concurrent=concurrent, address=address, steps=steps, epochs=epochs, size=size,
                         precision=None if precision is None else precision.value, compile=compile,
                         max_failures=max_failures, trial_retries=trial_retries, resume=resume, evaluate=evaluate,
                         segmenter=segmenter, dry_run=dry_run, estimate=estimate, fm_steps=fm_steps,
                         only=names, search_only=search_only)
    written = run_launch(opts)
    if written is not None:  # not a dry run or an estimate
        from ablate.ui.summary import experiment_summary, print_lines

        print_lines(experiment_summary(written, {"evaluation": "--no-evaluate"} if not evaluate else None))


@app.command()
def evaluate(
    exp: str = typer.Argument(..., help="experiment folder or URI written by `ablate launch`"),
    data: str | None = typer.Option(None, "--data", help="prepared dataset (default: the one the grid ran on)"),
    segmenter: str | None = typer.Option(None, "--segmenter", help="a U-Net file or 'ridge' (default: our U-Net if present)"),
    address: str | None = typer.Option(None, "--address", help="join a running Ray cluster, e.g. 'auto'"),
    gpus_per_task: float = typer.Option(0.0, "--gpus-per-task"),
    morphology: Morphology = choice_option(Morphology.ablate, "--morphology", Morphology,
                                           help_text="vessel-feature definitions: 'ablate' (ours) or 'automorph' "
                                           "(AutoMorph's)"),
    split: EvalSplit = choice_option(EvalSplit.test, "--split", EvalSplit,
                                     help_text="'test', or 'all' (every split of another --data)"),
) -> None:
    """Evaluate every finished trial on the test split (fidelity + vessel morphology).

    With --data naming another prepared dataset than the grid's, the results go to
    EXP/eval/datasets/<its folder name>-<its manifest's sha256, 12 digits>/ and the
    experiment's own evaluation is left as it is."""
    from ablate.evaluate.arguments import check_evaluation
    from ablate.evaluate.run import EvalOptions, evaluate_experiment
    from ablate.lock import command_line, experiment_lock
    from ablate.runtime import ray_session
    from ablate.train.results import print_summary

    # The library takes plain strings: the choices were checked by typer, before anything ran.
    opts = EvalOptions(exp=exp, data=data, segmenter=segmenter, gpus_per_task=gpus_per_task,
                       morphology=morphology.value, split=split.value)
    # A writer (results.parquet, eval/): one at a time per experiment; every argument is
    # checked before Ray starts (a wrong one costs a line, not a cluster start-up).
    with experiment_lock(exp, command_line()):
        setup = check_evaluation(opts)
        with ray_session(address):
            df = evaluate_experiment(opts, setup)
    if "trial" in df.columns:  # the grid's own dataset: results.parquet was updated
        print_summary(df)
        typer.echo(f"per-image metrics: {ExperimentLayout(exp).eval.per_image}")
    else:
        typer.echo(df.to_string())
    typer.echo(f"next: ablate report {exp}   |   ablate tensorboard {exp}")


@app.command()
def sample(
    exp: str = typer.Argument(..., help="experiment folder or URI whose grid had a `prior:` block"),
    n: int = typer.Option(..., "--n", help="samples each trial's folder should hold afterwards (only the missing "
                          "ones are drawn)"),
    trial: list[str] = typer.Option([], "--trial", help="a trial (results.parquet's `trial`) or a combination; "
                                    "repeat for several (default: every trial with a prior)"),
    address: str | None = typer.Option(None, "--address", help="join a running Ray cluster, e.g. 'auto'"),
    gpus_per_task: float = typer.Option(0.0, "--gpus-per-task"),
) -> None:
    """Draw more samples from the finished priors of an experiment, into EXP/samples/<trial>/.

    Resumable: re-run after an interruption, it draws only the chunks still missing (the same
    ones the trial would have drawn). `ablate evaluate EXP` then judges every sample."""
    from ablate.lock import command_line, experiment_lock
    from ablate.prior.more import SampleOptions, requests, sample_more
    from ablate.runtime import ray_session

    opts = SampleOptions(exp=exp, n=n, trials=tuple(trial), gpus_per_task=gpus_per_task)
    with experiment_lock(exp, command_line()):
        requests(opts)  # every argument checked before Ray starts
        with ray_session(address):
            done = sample_more(opts)
    for folder, d in done.items():
        typer.echo(f"{folder}: {d['drawn']} drawn, {d['total']} in all (prior step {d['prior_step']})")
    typer.echo(f"next: ablate evaluate {exp}   (judges every sample)")


@app.command()
def losses() -> None:
    """List every loss term with its description and options."""
    import inspect

    from ablate.losses import COMMON_OPTIONS, LOSSES

    for entry in LOSSES:
        typer.echo(f"{entry.name:<12} {entry.description}")
        opts = entry.options()
        if opts:
            typer.echo("             options: " + ", ".join(
                f"{k}={'<required>' if v is inspect.Parameter.empty else v!r}" for k, v in opts.items()))
    typer.echo("every term also takes: " + "; ".join(f"{k} ({v})" for k, v in COMMON_OPTIONS.items()))


@app.command()
def schema() -> None:
    """Print the JSON Schema of a search-space file (search_spaces/*.yaml), for editors.

    E.g. `ablate schema > search_spaces/schema.json`, then first in a YAML file
    `# yaml-language-server: $schema=schema.json` (VS Code's YAML extension, Neovim's yamlls)."""
    import json

    from ablate.config import search_space_schema

    typer.echo(json.dumps(search_space_schema(), indent=2))


# `ablate report EXP` and `ablate tensorboard EXP` live with the reporter.
from ablate.report.cli import report as _report_cmd
from ablate.report.cli import tensorboard as _tensorboard_cmd

app.command("report")(_report_cmd)
app.command("tensorboard")(_tensorboard_cmd)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
