"""The report for an experiment on object storage (s3://…).

The report is built from files (ablate.report.build works on a folder), so its inputs are staged into a local temporary folder, the folder-based
code runs unchanged, and its outputs are uploaded:

  downloaded  results.parquet (required), grid.json, eval/per_image.parquet, eval/notes.json
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
    return layout.results, layout.grid, layout.eval.per_image, layout.eval.notes


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
