"""The paper's two questions asked again of the prior's samples: Q1s and Q2s.

The same pairs as Q1 and Q2 (ablate.report.questions.q1_pairs / q2_pairs), the same
inference and verdict rules (one value per trial, the seed as the unit: Welch's statistic
with Hsu's df; Holm over each question's voting tests; ablate.report.verdicts), but the
metrics are the columns of eval/samples.parquet: one number per trial, computed between the
trial's samples and the real test images (ablate.report.sample_columns).

Primary metrics are declared in the search space (`questions: {q1s: {primary: [...]}, q2s:
...}`); there is no default, so an undeclared question gets no verdict ("not declared").
A metric votes only where it could be computed for every trial of both arms (a FID is NaN
where set_metrics could not compute it, an FD where there is no fundus model, a morphology
distance where the real images' feature does not vary) and, for FID / KID / FD, at or above
the sample-size floors the report applies to reconstructions (ablate.report.metric_names),
labelled with the smaller of the sample and real-image counts (`fid@20`). The Frechet
distance in a foundation model is "trained on" by a foundation arm of that model, as for
reconstructions (ablate.report.trained_on).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ablate.report.collect import Experiment
from ablate.report.compare import combination_terms, matches
from ablate.report.inference import welch
from ablate.report.judge_line import judge_line
from ablate.report.metric_names import below_floor, direction, labelled
from ablate.report.questions import (
    Answer,
    Declared,
    answer,
    q1_pairs,
    q2_pairs,
    segmenter_not_trained,
    without_untrained_judge,
)
from ablate.report.sample_columns import FD_FM, MORPH_W1, SET_DISTANCES, SHOWN, morph_features
from ablate.report.trained_on import trained_on_either

NOT_DECLARED = "not declared"


def sample_metric_columns(samples: pd.DataFrame) -> list[str]:
    """The sample table's metric columns with a better direction, in the report's order."""
    cols = [c for c in SHOWN if c in samples.columns] + [MORPH_W1 + f for f in morph_features(samples.columns)]
    return [c for c in cols if direction(c) is not None]


def set_size(samples: pd.DataFrame) -> int:
    """The n a distribution distance of these trials is labelled with: the fewest images in either set."""
    return int(np.minimum(samples["n_samples"], samples["n_real"]).min())


def fundus_model(samples: pd.DataFrame) -> str:
    """The fundus model fd_fm was computed in ("" where none), from the table's `fm` column."""
    names = sorted({str(v) for v in samples.get("fm", pd.Series(dtype=str)).dropna() if str(v)})
    return ", ".join(names)


def compare_samples(e: Experiment, a: str, b: str, primary: list[str] | None = None) -> list[dict]:
    """The records of `a` against `b` for every sample metric (the shape compare_pair gives,
    so ablate.report.verdicts judges them): per-trial values from eval/samples.parquet."""
    assert e.samples is not None  # only asked where the experiment has samples
    both = e.samples[e.samples["combination"].isin([a, b])]
    if both.empty:
        return []
    terms, fm, n = combination_terms(e), fundus_model(both), set_size(both)
    out = []
    for col in sample_metric_columns(e.samples):
        name = labelled(col, n) if col in SET_DISTANCES else col
        role = "primary" if primary is not None and matches(name, primary) else "secondary"
        values = {c: both.loc[both["combination"] == c, col].to_numpy(dtype=float) for c in (a, b)}
        nan = sum(int(np.isnan(v).sum()) for v in values.values())
        if nan == sum(len(v) for v in values.values()) and role != "primary":
            continue  # never computed here (no fundus model): nothing to show
        # The FD in the fundus model an arm trained its features on is that arm's objective.
        trained = trained_on_either(f"fd_{fm}", terms[a], terms[b], a, b) if col == FD_FM and fm else ""
        floor = below_floor(name) if col in SET_DISTANCES else None
        if trained:
            excluded = f"trained on ({trained})"
        elif nan:
            excluded = (f"not computable in {nan} of {sum(len(v) for v in values.values())} trial(s) "
                        "(NaN in eval/samples.parquet)")
        else:
            excluded = f"below sample-size floor ({floor})" if floor else ""
        out.append({"combination": a, "reference": b, "metric": name, "direction": direction(col), "role": role,
                    "trained_on": trained, "excluded": excluded, **welch(values[a], values[b]),
                    "n_images": 0, "images_better": 0, "images_worse": 0, "wilcoxon_p": np.nan})
    return out


def _ask(q: str, lead: str, pairs: list[tuple[str, str]], why: str, primary: list[str] | None, e: Experiment,
         declared: Declared) -> Answer:
    if primary is None:
        key = "q1s" if q.startswith("Q1s") else "q2s"
        return Answer(q, NOT_DECLARED, f"{q} Not declared: the search space names no `questions: {key}: "
                      "{primary: [...]}`, so no verdict; the sample metrics are in the table below, without one.")
    if not pairs:
        return Answer(q, "not in this grid", f"{q} Not in this grid: {why}")
    return answer(q, lead, pairs, primary, e, declared.source, compare=compare_samples)


def answer_q1s(e: Experiment, declared: Declared) -> Answer:
    """Q1 of the samples: each foundation arm's samples against its LPIPS arm's."""
    pairs, why = q1_pairs(e)
    return _ask("Q1s: do the foundation-model arm's samples beat the LPIPS arm's?",
                "Q1s (samples: foundation-model term vs LPIPS term)", pairs, why, declared.q1s, e, declared)


def answer_q2s(e: Experiment, declared: Declared) -> Answer:
    """Q2 of the samples: each edge arm's samples against the baseline's. With a vessel
    morphology primary, the vessel maps must come from a trained U-Net, as for Q2."""
    pairs, why = q2_pairs(e)
    a = _ask("Q2s: does the edge term give samples closer to real fundus images than the baseline's?",
             "Q2s (samples: edge term vs baseline)", pairs, why, declared.q2s, e, declared)
    vessel = [m for m in declared.q2s or [] if m.startswith(MORPH_W1)]
    if not vessel or a.verdict in (NOT_DECLARED, "not in this grid"):
        return a
    assert e.samples is not None
    a.judge = judge_line(e.notes)  # the samples' maps come from the judge measured on the grid's own originals
    names = sorted({str(s) for s in e.samples.get("segmenter", pd.Series(dtype=str)).dropna()})
    why_not = next(filter(None, map(segmenter_not_trained, names or [""])), None)  # any map not from a U-Net
    return without_untrained_judge(a, why_not, f" (primary {', '.join(vessel)})")
