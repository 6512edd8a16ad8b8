"""The Tuning section as both documents render it (ablate.report.tuning computes it): the
sentence on what the verdicts below rest on, the chosen points beside the as-written ones,
each search's outcome, and for index.html the search curves (ablate.report.plots.search_curves)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ablate.report.metric_names import unit
from ablate.report.render import fmt
from ablate.report.text import plain
from ablate.report.tuning import CombinationSearch, TuningSection
from ablate.report.views import Table, text_table


@dataclass(frozen=True)
class TuningView:
    lead: str  # what stage 1 was, and that the verdicts rest on stage 2 only
    points: Table  # per (combination, searched key): its distribution, the as-written and the chosen value
    outcomes: Table  # per combination: counts, best, the as-written point's score, median, margin
    notes: list[str]  # files the section is without; combinations not searched
    curves: str  # PNG data URI of the search curves; "" with no stage-1 trial to draw


def search_state(c: CombinationSearch) -> str:
    return "ended" if c.finished else f"search not finished ({len(c.trials)} of {c.budget} trials)"


def default_score(c: CombinationSearch) -> str:
    """The as-written point's stage-1 score: its last value, and how it ended when it did not finish."""
    d = c.default
    if d is None:
        return "— (not run)"
    value, steps = fmt(d["objective"]), int(d["steps"])
    if d["status"] == "done":
        return value
    if d["status"] == "pruned":
        return f"{value} (pruned at step {steps})"
    ended = {"error": "errored", "incomplete": "incomplete"}[d["status"]]
    return f"{value} ({ended} at step {steps})" if math.isfinite(d["objective"]) else f"— ({ended} at step {steps})"


def signed(x: float, u: str) -> str:
    return "—" if not math.isfinite(x) else ("+" if x > 0 else "") + fmt(x) + u


def _value(v) -> str:
    return "—" if v is None else fmt(v)


def tuning_view(t: TuningSection, curves: str) -> TuningView:
    """The section's text.

    Args:
        t: the section's content (ablate.report.tuning.load_tuning).
        curves: the search curves as a PNG data URI (ablate.report.plots.search_plot), or "".
    """
    u, better = unit(t.objective), "higher" if t.mode == "max" else "lower"
    seeds = ", ".join(map(str, t.seeds)) or "none yet"
    disjoint = ("disjoint from" if t.disjoint else "NOT disjoint from")
    units = f" ({u.strip()})" if u else ""
    lead = (f"Tuned arms, two stages. Stage 1 searched the keys of each combination's tune.space at the search seed "
            f"{t.search_seed}, reading the train and val splits only (objective {t.objective}, {better} is better; "
            f"{t.budget} trials per combination, the as-written point first). Stage 2 retrained each combination's "
            f"chosen point with fresh seeds ({seeds}, as in results.parquet; {disjoint} the search seed) and "
            "evaluated it on test. The verdicts below are computed on stage-2 trials only. The margin is the best "
            f"value over the median of the finished stage-1 trials, in {t.objective}'s units{units}; positive = "
            "better. Pruned trials stopped at fewer steps, so they are plotted at their last value but left out of "
            "the median.")
    points = pd.DataFrame([{"combination": c.combination, "searched key": k.key, "searched over": k.distribution,
                            "as written": _value(k.default),
                            "chosen": _value(k.chosen) if c.finished else search_state(c)}
                           for c in t.combinations for k in c.keys])
    outcomes = pd.DataFrame([{
        "combination": c.combination, "search": search_state(c), "trials": len(c.trials), "done": c.count("done"),
        "pruned": c.count("pruned"), "errored": c.count("error"),
        f"best {t.objective}": "—" if not c.finished else f"{fmt(c.best)} ({c.chosen_trial}, step {c.best_steps})",
        "as written (order 0)": default_score(c), "median of finished": fmt(c.median) if c.count("done") else "—",
        "best − median": signed(c.margin, u)} for c in t.combinations])
    notes = list(t.notes)
    if any(c.count("incomplete") for c in t.combinations):
        notes.append("Incomplete stage-1 trials (neither finished, pruned nor errored: the search was stopped while "
                     "they ran): " + ", ".join(f"{c.combination} {c.count('incomplete')}" for c in t.combinations
                                               if c.count("incomplete")) + ".")
    if t.not_searched:
        notes.append(f"Not searched (stage 2 trains them as written): {', '.join(t.not_searched)}.")
    return TuningView(lead=plain(lead), points=text_table(points, left=("combination", "searched key", "searched over",
                                                                        "chosen")),
                      outcomes=text_table(outcomes, left=("combination", "search", f"best {t.objective}",
                                                          "as written (order 0)")),
                      notes=[plain(n) for n in notes], curves=curves)
