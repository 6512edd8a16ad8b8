"""What the report needs to know of a metric, declared beside the code that computes it
(as torchmetrics puts `higher_is_better` on the metric itself): its name, the direction
that is better, the unit a difference is written in, whether it is one number per test set
(a distribution metric), whether it may vote on a question, and where it is undefined.

A leaf: the evaluation declares `MetricInfo`s next to each metric's function
(ablate.evaluate.*), `ablate.evaluate.catalogue` gathers them, and the report and the
search-space loader read them from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Better(str, Enum):
    """Which way a metric improves."""
    HIGHER = "higher"
    LOWER = "lower"


@dataclass(frozen=True)
class MetricInfo:
    """One metric, or one family of metrics named by a prefix (`fd_<model>`).

    Args:
        name: the column name the evaluation writes (without `test/`); for a family, the prefix.
        better: the better direction; None where neither is (a descriptive number).
        unit: the unit of a difference ("dB"); "" for unitless scores.
        per_set: one number per test set (FID, KID, FD), not one per image; the report names
            it with its sample size (`fid@20`) and keeps it out of votes below a floor.
        may_vote: may be a declared primary metric of a question. False for a number that is
            no measure of faithfulness (a control), with the reason in `about`.
        family: `name` is a prefix; the member names add a model or feature after it.
        about: one line on what the number is.
        nan_when: where the number is NaN (undefined) and why, for the report's note on a metric
            it could not compute for some images; "" where it never is.
    """
    name: str
    better: Better | None
    unit: str = ""
    per_set: bool = False
    may_vote: bool = True
    family: bool = False
    about: str = ""
    nan_when: str = ""

    @property
    def higher_is_better(self) -> bool | None:
        return None if self.better is None else self.better is Better.HIGHER
