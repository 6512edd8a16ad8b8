"""`write_report(EXP)`: the report for an experiment in a local folder (built in place)
or on object storage (its inputs staged into a temporary folder, built there, uploaded).
This is what `ablate report` and the end of `ablate launch` call."""

from __future__ import annotations

from pathlib import Path

from ablate import storage
from ablate.evaluate.samples import N_IMAGES


def write_report(exp: str | Path, n_images: int = N_IMAGES, hparams: bool = True) -> Path | str:
    """Returns the path of report/index.html, or its URI for an experiment on object storage."""
    if storage.is_uri(exp):
        from ablate.report.staged import write_report_staged

        return write_report_staged(str(exp), n_images=n_images, hparams=hparams)
    from ablate.report.build import build_report

    return build_report(exp, n_images=n_images, hparams=hparams)
