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
from ablate.report.collect import GRID, NOTES, PER_IMAGE, RESULTS, ReportError

INPUTS = (RESULTS, GRID, PER_IMAGE.as_posix(), NOTES.as_posix())


def stage_inputs(uri: str, local: Path) -> list[str]:
    """Download the report's input files that exist; ReportError without results.parquet."""
    if not storage.is_file(storage.join(uri, RESULTS)):
        raise ReportError(f"{uri}/{RESULTS}: not found; is {uri} an experiment from `ablate launch`? "
                          "(launch writes it when the grid ends)")
    staged = []
    for rel in INPUTS:
        if storage.is_file(storage.join(uri, rel)):
            storage.download(storage.join(uri, rel), local / rel)
            staged.append(rel)
    return staged


def write_report_staged(uri: str, n_images: int, hparams: bool) -> str:
    """Returns the URI of report/index.html."""
    from ablate.report.build import build_report
    from ablate.report.hparams import SESSION_DIR
    from ablate.report.render import REPORT_DIR

    uri = storage.normalize(uri)
    with tempfile.TemporaryDirectory(prefix="ablate-report-") as tmp:
        local = Path(tmp)
        stage_inputs(uri, local)
        build_report(local, n_images=n_images, hparams=hparams, location=uri)
        storage.upload_dir(local / REPORT_DIR, storage.join(uri, REPORT_DIR))
        for session in sorted((local / "tensorboard").glob(f"*/{SESSION_DIR}")):
            remote = storage.join(uri, "tensorboard", session.parent.name, SESSION_DIR)
            # Not atomic on an object store: a reader between these two lines sees no session.
            storage.delete_dir(remote)
            storage.upload_dir(session, remote)
    return storage.join(uri, REPORT_DIR, "index.html")
