"""The report for an experiment on object storage (s3://…).

The report is built from files (ablate.report.build works on a folder), so its inputs are staged into a local temporary folder, the folder-based
code runs unchanged, and its outputs are uploaded:

  downloaded  results.parquet (required), grid.json, eval/per_image.parquet, eval/notes.json,
              eval/samples.parquet, eval/sample_neighbours.parquet, search/trials.parquet and
              search/chosen.json (a tuned grid's stage 1: the Tuning section) and, for each trial the sample
              table names, samples/<trial>/contact_sheet.png (the Synthesis section's pictures)
  read        checkpoints for the image grid straight from the bucket (models.checkpoint.locate_checkpoint),
              and the test split from the dataset URI grid.json records
  uploaded    report/* and tensorboard/<trial>/hparams/ (each trial's HParams session
              replaces the one in the bucket)

Messages and the report itself name the URI, not the temporary folder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ablate import storage
from ablate.experiment_layout import ExperimentLayout
from ablate.report.collect import ReportError


def report_inputs(layout: ExperimentLayout) -> tuple[str, ...]:
    """The files a report reads, results.parquet first (the only one it needs)."""
    return (layout.results, layout.grid, layout.eval.per_image, layout.eval.notes, layout.eval.samples,
            layout.eval.sample_neighbours, layout.search_trials, layout.search_chosen)


def contact_sheets(layout: ExperimentLayout, trials) -> list[str]:
    """The pictures of these trials' samples: samples/<trial>/contact_sheet.png and
    eval/sample_vessels/<trial>.png (the same samples with their vessel maps)."""
    from ablate.data.sample_store import CONTACT_SHEET

    return [p for t in trials for p in (storage.join(layout.trial_samples(t), CONTACT_SHEET),
                                        layout.eval.sample_vessels(t))]


def stage_inputs(uri: str, local: Path) -> list[str]:
    """Download the report's input files that exist; ReportError without results.parquet."""
    remote = report_inputs(ExperimentLayout(uri))
    if not storage.is_file(remote[0]):
        raise ReportError(f"{remote[0]}: not found; is {uri} an experiment from `ablate launch`? "
                          "(launch writes it when the grid ends)")
    staged = []
    for src, dst in zip(remote, report_inputs(ExperimentLayout(local)), strict=True):
        if storage.is_file(src):
            storage.download(src, Path(dst))
            staged.append(src)
    samples = Path(ExperimentLayout(local).eval.samples)
    if samples.is_file():  # the trials with samples: their contact sheets, where drawn
        import pandas as pd

        trials = sorted(set(pd.read_parquet(samples, columns=["trial"])["trial"].astype(str)))
        for src, dst in zip(contact_sheets(ExperimentLayout(uri), trials),
                            contact_sheets(ExperimentLayout(local), trials), strict=True):
            if storage.is_file(src):
                storage.download(src, Path(dst))
                staged.append(src)
    return staged


def write_report_staged(uri: str, n_images: int, hparams: bool) -> str:
    """Returns the URI of report/index.html."""
    from ablate.report.build import build_report
    from ablate.report.hparams import SESSION_DIR

    uri = storage.normalize(uri)
    with tempfile.TemporaryDirectory(prefix="ablate-report-") as tmp:
        local = Path(tmp)
        stage_inputs(uri, local)
        build_report(local, n_images=n_images, hparams=hparams, location=uri)
        here, there = ExperimentLayout(local), ExperimentLayout(uri)
        storage.upload_dir(Path(here.report), there.report)
        for session in sorted(Path(here.tensorboard).glob(f"*/{SESSION_DIR}")):
            remote = storage.join(there.tensorboard_run(session.parent.name), SESSION_DIR)
            # Not atomic on an object store: a reader between these two lines sees no session.
            storage.delete_dir(remote)
            storage.upload_dir(session, remote)
    return ExperimentLayout(uri).report_html
