"""The few lines every command ends with: what it wrote where, what it skipped and why,
and the command to run next."""

from __future__ import annotations

from ablate import storage
from ablate.experiment_layout import ExperimentLayout


def experiment_files(layout: ExperimentLayout) -> tuple[tuple[str, str], ...]:
    """What an experiment folder holds after `ablate launch`, in the order a user looks for it."""
    return (
        (layout.results, "one row per trial; also results.csv"),
        (layout.eval.per_image, "test metrics per image"),
        (layout.report_html, "the report"),
        (layout.tensorboard, "training curves"),
        (layout.logs, "Ray's output"),
    )


def _exists(path: str) -> bool:
    return storage.is_file(path) or storage.is_dir(path)


def experiment_summary(exp, skipped: dict[str, str] | None = None) -> list[str]:
    """Args:
        exp: the experiment folder or URI.
        skipped: {what: why} the command left out on purpose (e.g. {"evaluation": "--no-evaluate"}).
    """
    lines = ["written:"]
    layout = ExperimentLayout(exp)
    lines += [f"  {path}  ({what})" for path, what in experiment_files(layout) if _exists(path)]
    for what, why in (skipped or {}).items():
        lines.append(f"skipped: {what} ({why})")
    nxt = []
    if not _exists(layout.eval.per_image):
        nxt.append(f"ablate evaluate {exp}")
    if not _exists(layout.report_html):
        nxt.append(f"ablate report {exp}")
    nxt.append(f"ablate tensorboard {exp}")
    lines.append("next: " + "   |   ".join(nxt))
    return lines


def print_lines(lines: list[str]) -> None:
    print("\n".join(lines), flush=True)
