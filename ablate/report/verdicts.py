"""Verdict rules that hold their error rate, on plain records (one dict per test), so the
report and benchmarks/verdict_calibration.py run the very same code.

A question's family is every test that votes: each (pair of combinations, primary metric)
with at least MIN_SEEDS finished seeds in both arms, a better direction, not trained on by
either arm and not a distribution metric below its sample-size floor. Holm's step-down
correction runs over that whole family, so the chance that identical arms produce any
"better"/"worse" anywhere in the question is at most ALPHA.

Per pair ("yes" means the candidate, the first combination, beats the reference):
  yes                  significantly better on >= 1 primary metric and worse on none
  no                   significantly worse on >= 1 and better on none
  mixed                better on one primary metric and worse on another
  not enough seeds     a primary metric has fewer than MIN_SEEDS seeds in an arm
  not enough evidence  otherwise (nothing significant, or no primary metric could vote: a
                       test with no seed-to-seed spread has no p value and does not vote)
The headline applies the same rule to all the question's tests at once: MIXED only when
something is significantly better and something significantly worse (`headline`).

Non-inferiority (`non_inferiority`, only where the search space declares a margin): an arm is
shown not worse than the baseline by more than the margin when the lower end of the
one-sided 95 % interval of its gain (arm - baseline in the metric's better direction, Hsu's
df) is above -margin; "not shown" otherwise; "not decided" where the test above could not
run (seeds below MIN_SEEDS, no seed spread, excluded). Each arm on its own, uncorrected
across arms: a one-sided test per arm at 5 %.
"""

from __future__ import annotations

import math

import numpy as np

from ablate.report.inference import MIN_SEEDS, holm, one_sided_lower

ALPHA = 0.05
PAIR_VERDICTS = ("yes", "no", "mixed", "not enough evidence", "not enough seeds")
NON_INFERIORITY = ("shown", "not shown", "not decided")


def effect(direction: str | None, diff: float) -> str:
    """"better" / "worse" for the first arm in the metric's better direction, "none" at 0 or NaN."""
    if direction is None or not np.isfinite(diff) or diff == 0:
        return "none"
    return "better" if (diff > 0) == (direction == "higher") else "worse"


def enough_seeds(r: dict) -> bool:
    return min(r["n_seeds"], r["n_seeds_reference"]) >= MIN_SEEDS


def votes(r: dict) -> bool:
    """Whether a test is in its question's family."""
    return (r["role"] == "primary" and not r["excluded"] and r["direction"] is not None and enough_seeds(r)
            and bool(np.isfinite(r["p"])))


def outcome(r: dict) -> str:
    """What one test contributes, in words (the tables' `verdict` column)."""
    if r["excluded"]:
        return f"not voted: {r['excluded']}"
    if not enough_seeds(r):
        return f"not enough seeds ({r['n_seeds']} vs {r['n_seeds_reference']}, need {MIN_SEEDS})"
    if r["direction"] is None:
        return "no better direction"
    if r["role"] == "primary" and not np.isfinite(r["p"]) and r.get("note"):
        return f"not voted: {r['note']}"
    if r.get("significant"):
        return r["effect"]
    if r["role"] != "primary":
        return "secondary: not voted"
    return "not significant"


def judge(records: list[dict], alpha: float = ALPHA) -> list[dict]:
    """Holm over the voting tests of one family; adds p_holm, effect, significant, votes, verdict."""
    voting = [votes(r) for r in records]
    adjusted = holm([r["p"] if v else math.nan for r, v in zip(records, voting)])
    out = []
    for r, v, ph in zip(records, voting, adjusted):
        r = dict(r, votes=v, p_holm=float(ph), effect=effect(r["direction"], r["diff"]))
        r["significant"] = bool(v and ph < alpha)
        r["verdict"] = outcome(r)
        out.append(r)
    return out


def carried_by(judged: list[dict], word: str) -> list[dict]:
    """The tests behind a headline: the significant ones in its direction ("yes": better,
    "no": worse, "mixed": both); none for any other word."""
    wanted = {"yes": {"better"}, "no": {"worse"}, "mixed": {"better", "worse"}}.get(word, set())
    return [r for r in judged if r.get("significant") and r["effect"] in wanted]


def pair_verdict(judged: list[dict]) -> str:
    """The verdict of one pair from its judged tests (all roles; only primaries count)."""
    primary = [r for r in judged if r["role"] == "primary" and not r["excluded"] and r["direction"] is not None]
    if any(not enough_seeds(r) for r in primary):
        return "not enough seeds"
    better = any(r["significant"] and r["effect"] == "better" for r in primary)
    worse = any(r["significant"] and r["effect"] == "worse" for r in primary)
    if better and worse:
        return "mixed"
    if better:
        return "yes"
    if worse:
        return "no"
    return "not enough evidence"


def headline(pair_verdicts: list[str]) -> str:
    """One word for a question over its pairs: never MIXED from {no, not enough evidence}.

    mixed   a pair is mixed, or one pair says yes and another no (something significantly
            better and something significantly worse)
    yes/no  at least one pair says so and none says the opposite or mixed
    not enough seeds     every pair lacks seeds
    not enough evidence  otherwise; "not in this grid" when there is no pair
    """
    v = set(pair_verdicts)
    unknown = v - set(PAIR_VERDICTS)
    if unknown:
        raise ValueError(f"headline: unknown pair verdict(s) {sorted(unknown)}; valid: {PAIR_VERDICTS}")
    if not v:
        return "not in this grid"
    if "mixed" in v or {"yes", "no"} <= v:
        return "mixed"
    if "yes" in v:
        return "yes"
    if "no" in v:
        return "no"
    if v == {"not enough seeds"}:
        return "not enough seeds"
    return "not enough evidence"


def non_inferiority(r: dict, margin: float) -> dict:
    """Whether one arm is shown not worse than the reference by more than `margin`.

    Args:
        r: the record of the arm against the reference in the declared metric (a
            `compare_pair` record: welch's columns, direction, excluded).
        margin: the declared margin, > 0, in the metric's units.

    Returns {"decision": one of NON_INFERIORITY, "gain": the estimate, "bound": the lower
    end of the one-sided 95 % interval (both in the better direction: positive = the arm
    is better; NaN when not decided), "why": the reason when not decided}.
    """
    out = {"decision": "not decided", "gain": math.nan, "bound": math.nan, "why": ""}
    if r["direction"] is None:
        return dict(out, why=f"{r['metric']} has no better direction")
    sign = 1.0 if r["direction"] == "higher" else -1.0
    out["gain"] = sign * r["diff"]
    if r["excluded"]:
        return dict(out, why=r["excluded"])
    if not enough_seeds(r):
        return dict(out, why=f"{r['n_seeds']} vs {r['n_seeds_reference']} seeds, needs {MIN_SEEDS} per arm")
    bound = one_sided_lower(r, sign)
    if not np.isfinite(bound):
        return dict(out, why=r.get("note") or "no interval")
    return dict(out, decision="shown" if bound > -margin else "not shown", bound=bound)
