"""One comparison between two combinations of an experiment, every test metric at once:
the records ablate.report.verdicts judges (see ablate.report.inference for the test).

A record per metric with a better direction: the difference (first - reference) of the
means of per-trial values with its t interval (Welch's statistic, Hsu's df), the metric's role in the question
(primary votes, secondary is shown), why it cannot vote (`excluded`: trained on by an arm,
or a distribution metric below its sample-size floor), and the descriptive per-image
columns. Validation metrics (val/*) are not compared: they are logged on a few batches
during training, and the test set is what the questions are about.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ablate.report.collect import Experiment
from ablate.report.inference import COLUMNS, image_agreement, seed_averaged, welch
from ablate.report.metric_names import DUPLICATE_OF, base_name, below_floor, direction
from ablate.report.trained_on import terms_of_row, trained_on_either

TEST_SOURCES = ("test", "test-set")


def comparable_metrics(e: Experiment) -> list[str]:
    """Test metrics with a better direction, each number once (duplicates dropped)."""
    tm = e.trial_metrics
    names = tm.loc[tm["source"].isin(TEST_SOURCES), "metric"].unique()
    return [m for m in names if direction(m) and m not in DUPLICATE_OF]


def trial_values(e: Experiment, combination: str, metric: str) -> np.ndarray:
    """The metric's per-trial values (one per finished seed) of one combination."""
    tm = e.trial_metrics
    sel = (tm["combination"] == combination) & (tm["metric"] == metric) & tm["source"].isin(TEST_SOURCES)
    return tm.loc[sel, "value"].to_numpy(dtype=float)


def combination_terms(e: Experiment) -> dict[str, dict]:
    """{combination: {term: options}} from each combination's first trial."""
    first = e.trials.drop_duplicates("combination")
    return {r["combination"]: terms_of_row(r) for r in first.to_dict("records")}


def matches(metric: str, declared: list[str]) -> bool:
    """`fid@20` matches a declared `fid`; any other name must be equal."""
    return metric in declared or base_name(metric) in declared


def compare_pair(e: Experiment, a: str, b: str, primary: list[str] | None = None) -> list[dict]:
    """Records of `a` against `b` for every comparable metric; `primary`: the question's
    declared primary metrics (None: every record is secondary, as in the baseline table)."""
    terms = combination_terms(e)
    wa = wb = None
    if e.evaluated:
        wa, wb = seed_averaged(e.image_metrics, a), seed_averaged(e.image_metrics, b)
    out = []
    for m in comparable_metrics(e):
        trained = trained_on_either(m, terms[a], terms[b], a, b)
        floor = below_floor(m)
        excluded = f"trained on ({trained})" if trained else (f"below sample-size floor ({floor})" if floor else "")
        r = {"combination": a, "reference": b, "metric": m, "direction": direction(m),
             "role": "primary" if primary is not None and matches(m, primary) else "secondary",
             "trained_on": trained, "excluded": excluded,
             **welch(trial_values(e, a, m), trial_values(e, b, m))}
        if wa is not None and m in wa.columns:
            r.update(image_agreement(wa, wb, m, direction(m) == "higher"))
        else:  # whole-test-set numbers (fid@n ...) have no per-image values
            r.update({"n_images": 0, "images_better": 0, "images_worse": 0, "wilcoxon_p": np.nan})
        out.append(r)
    return out


def as_table(records: list[dict]) -> pd.DataFrame:
    extra = [c for c in ("p_holm", "effect", "significant", "votes", "verdict", "question") if records and c in records[0]]
    return pd.DataFrame(records, columns=COLUMNS + extra)
