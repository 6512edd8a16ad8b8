"""The few lines every command ends with: what it wrote where, what it skipped and why,
and the command to run next."""

from __future__ import annotations

from ablate import storage

# What an experiment folder holds after `ablate launch`, in the order a user looks for it.
EXPERIMENT_FILES = (
    ("results.parquet", "one row per trial; also results.csv"),
    ("eval/per_image.parquet", "test metrics per image"),
    ("report/index.html", "the report"),
    ("tensorboard", "training curves"),
    ("logs", "Ray's output"),
)


def _exists(path: str) -> bool:
    return storage.is_file(path) or storage.is_dir(path)


def experiment_summary(exp, skipped: dict[str, str] | None = None) -> list[str]:
    """Args:
        exp: the experiment folder or URI.
        skipped: {what: why} the command left out on purpose (e.g. {"evaluation": "--no-evaluate"}).
    """
    lines = ["written:"]
    lines += [f"  {storage.join(exp, name)}  ({what})" for name, what in EXPERIMENT_FILES
              if _exists(storage.join(exp, name))]
    for what, why in (skipped or {}).items():
        lines.append(f"skipped: {what} ({why})")
    nxt = []
    if not _exists(storage.join(exp, "eval", "per_image.parquet")):
        nxt.append(f"ablate evaluate {exp}")
    if not _exists(storage.join(exp, "report", "index.html")):
        nxt.append(f"ablate report {exp}")
    nxt.append(f"ablate tensorboard {exp}")
    lines.append("next: " + "   |   ".join(nxt))
    return lines


def print_lines(lines: list[str]) -> None:
    print("\n".join(lines), flush=True)
