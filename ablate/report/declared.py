"""Pre-declared primary metrics: the `questions:` key of a search space.

    questions:
      q1: {primary: [psnr, ssim]}                       # 1 or 2 metrics that vote on Q1
      q2: {primary: [border_width_error, cldice]}  # 1 or 2 metrics that vote on Q2
      ranking: [psnr, ssim, border_width_error, cldice]   # optional
      non_inferiority: {metric: psnr, margin: 0.5}        # optional: "not worse than the baseline
                                                          # by more than 0.5 dB" (no default)
      q1s: {primary: [fid, recall]}                       # optional: Q1 asked of the prior's samples
      q2s: {primary: [morph_w1.density]}                  # optional: Q2 asked of them (no default)

Declared before the run, so the verdict cannot be steered by picking, afterwards, the
metrics that happened to come out significant. Parsed here (not in ablate.config, which
calls it and turns the ValueError into its ConfigError) so the rules sit with the report
that applies them. Kept light: no pandas.
"""

from __future__ import annotations

import math
from typing import Any

QUESTION_KEYS = ("q1", "q2", "ranking", "non_inferiority", "q1s", "q2s")
SAMPLE_QUESTIONS = ("q1s", "q2s")  # asked of eval/samples.parquet; no defaults

# Q2 asks whether vessels stay sharp and continuous: the width of the original's vessel borders
# as the reconstruction draws them, best at the original's (ablate.evaluate.vessel_border; issue
# 27: before, vessel_sharpness, a ratio that rewarded halos and over-enhancement), and
# centre-line Dice (issue 14; before, cldice and abs_delta_average_width).
DEFAULT_QUESTIONS = {"q1": {"primary": ["psnr", "ssim"]}, "q2": {"primary": ["border_width_error", "cldice"]}}


def parse_questions(raw: Any, where: str) -> dict:
    """`questions: {q1: {primary: [m, ...]}, q2: {primary: [...]}, ranking: [m, ...]}` -> the same
    with every key filled: each question has one or two primary metrics (the ones that vote;
    the report shows the rest as secondary); `ranking` defaults to q1's and q2's primaries.
    A question left out gets the report's default (DEFAULT_QUESTIONS); `non_inferiority` is
    kept only where declared (parse_non_inferiority), and so are `q1s` / `q2s`
    (parse_sample_primary: the same questions asked of the prior's samples)."""
    from ablate.report.metric_names import canonical, info, known_metric, metric_vocabulary

    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping with q1, q2 and optionally ranking, non_inferiority, q1s and q2s, "
                         f"got {raw!r}")
    unknown = sorted(set(raw) - set(QUESTION_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {list(QUESTION_KEYS)}")

    def metrics(value: Any, key: str, most: int | None) -> list[str]:
        if not isinstance(value, list) or not value or not all(isinstance(m, str) for m in value):
            raise ValueError(f"{where}.{key}: expected a non-empty list of metric names, got {value!r}")
        if most is not None and len(value) > most:
            raise ValueError(f"{where}.{key}: at most {most} primary metrics (each one more is a test the "
                              f"question's error rate pays for), got {value}")
        bad = [m for m in value if not known_metric(m)]
        if bad:
            raise ValueError(f"{where}.{key}: unknown metric(s) {bad}; valid: {metric_vocabulary()}")
        declared = {m: info(m) for m in value}
        controls = [(m, d) for m, d in declared.items() if d is not None and not d.may_vote]  # None: refused above
        if most is not None and controls:  # a primary votes; ranking may still list a control
            raise ValueError(f"{where}.{key}: {controls[0][0]} may not vote ({controls[0][1].about}); "
                             "declare a fidelity or vessel measure")
        once = [canonical(m) for m in value]
        if len(set(once)) != len(once):
            raise ValueError(f"{where}.{key}: {value} names one number twice (betti0_error = abs_delta_components, "
                              "betti1_error = abs_delta_holes)")
        return list(value)

    out: dict[str, Any] = {}
    for q in ("q1", "q2"):
        body = raw.get(q, DEFAULT_QUESTIONS[q])
        if not isinstance(body, dict) or set(body) != {"primary"}:
            raise ValueError(f"{where}.{q}: expected {{primary: [metric, ...]}}, got {body!r}")
        out[q] = {"primary": metrics(body["primary"], f"{q}.primary", 2)}
    default_ranking = list(dict.fromkeys(out["q1"]["primary"] + out["q2"]["primary"]))
    out["ranking"] = metrics(raw["ranking"], "ranking", None) if "ranking" in raw else default_ranking
    if "non_inferiority" in raw:  # absent: the report says nothing about it (no margin of ours)
        out["non_inferiority"] = parse_non_inferiority(raw["non_inferiority"], f"{where}.non_inferiority")
    for q in SAMPLE_QUESTIONS:  # absent: the report says they were not declared and gives no verdict
        if q in raw:
            out[q] = {"primary": parse_sample_primary(raw[q], f"{where}.{q}")}
    return out


def parse_sample_primary(body: Any, where: str) -> list[str]:
    """`{primary: [m, ...]}` of q1s / q2s -> the 1 or 2 metrics that vote: columns of
    eval/samples.parquet with a better direction that may vote (ablate.report.sample_columns;
    density, the morphology floors and the memorisation shares may not). A FID, KID or FD
    declared here still votes only where evaluation could compute it, at or above the
    sample-size floors (the report says so where it cannot).

    Args:
        body: the value of `questions.q1s` or `questions.q2s`.
        where: the file and key path, for messages.
    """
    from ablate.report.sample_columns import sample_info, sample_vocabulary

    if not isinstance(body, dict) or set(body) != {"primary"}:
        raise ValueError(f"{where}: expected {{primary: [metric, ...]}} (metrics of eval/samples.parquet), "
                         f"got {body!r}")
    value = body["primary"]
    key = f"{where}.primary"
    if not isinstance(value, list) or not value or not all(isinstance(m, str) for m in value):
        raise ValueError(f"{key}: expected a non-empty list of sample metric names, got {value!r}")
    if len(value) > 2:
        raise ValueError(f"{key}: at most 2 primary metrics (each one more is a test the question's error rate "
                         f"pays for), got {value}")
    for m in value:
        found = sample_info(m)
        if found is None:
            raise ValueError(f"{key}: {m!r} is no metric of the samples; valid: {sample_vocabulary()}")
        if not found.may_vote or found.better is None:
            voting = [v for v in sample_vocabulary() if (i := sample_info(v)) is not None and i.may_vote
                      and i.better is not None]
            raise ValueError(f"{key}: {m} may not vote ({found.about}); declare one of {voting}")
    if len(set(value)) != len(value):
        raise ValueError(f"{key}: {value} names one metric twice")
    return list(value)


def parse_non_inferiority(raw: Any, where: str) -> dict:
    """`{metric: psnr, margin: 0.5}` -> the same, margin as a float: the largest loss in
    `metric` (in its units, in its worse direction) an arm may show against the baseline and
    still count as not worse. Declared before the run, like the primaries, so the margin is
    not fitted to the differences that came out.

    Args:
        raw: the value of `questions.non_inferiority`.
        where: the file and key path, for messages.
    """
    from ablate.report.metric_names import direction, info, known_metric, metric_vocabulary

    example = "{metric: psnr, margin: 0.5}"
    if not isinstance(raw, dict) or set(raw) != {"metric", "margin"}:
        raise ValueError(f"{where}: expected {example} (the metric, and the margin in its units), got {raw!r}")
    metric, margin = raw["metric"], raw["margin"]
    if not isinstance(metric, str) or not known_metric(metric):
        raise ValueError(f"{where}.metric: unknown metric {metric!r}; valid: {metric_vocabulary()}")
    declared = info(metric)
    if declared is not None and not declared.may_vote:
        raise ValueError(f"{where}.metric: {metric} is no measure of fidelity ({declared.about}); "
                         "declare one, e.g. psnr or ssim")
    if direction(metric) is None:
        raise ValueError(f"{where}.metric: {metric} has no better direction, so no arm can be worse in it; "
                         "declare one that has, e.g. psnr or ssim")
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not math.isfinite(margin) or margin <= 0:
        unit = f" {declared.unit}" if declared is not None and declared.unit else ""
        raise ValueError(f"{where}.margin: expected a positive number in {metric}'s units (e.g. 0.5 for "
                         f"0.5{unit or ' (unitless)'}), got {margin!r}")
    return {"metric": metric, "margin": float(margin)}


def check_q1_primary(questions: dict, trials: list, where: str) -> None:
    """Q1's primary metrics must be ones neither of its arms (a `foundation` or an `lpips`
    combination) trained on: the LPIPS arm is not judged by LPIPS, the foundation arm not by
    the Frechet distance in its own model."""
    from ablate.report.trained_on import terms_of_spec, trained_on

    for spec in trials:
        terms = terms_of_spec(spec)
        if ("foundation" in terms) == ("lpips" in terms):
            continue  # not a Q1 arm (neither term, or both)
        for m in questions["q1"]["primary"]:
            why = trained_on(m, terms)
            if why:
                raise ValueError(f"{where}: {m} is a training objective of combination {spec.combination!r} "
                                  f"({why}); Q1's primary metrics must be ones neither arm trained on")



def check_non_inferiority(questions: dict, trials: list, where: str) -> None:
    """The non-inferiority metric must be one no arm trained on: each arm is compared with the
    baseline, and an arm (or a baseline) trained on the metric is judged by its own objective
    (an L2 arm on PSNR), the rule `check_q1_primary` applies to Q1's arms."""
    from ablate.report.trained_on import terms_of_spec, trained_on

    declared = questions.get("non_inferiority")
    if declared is None:
        return
    for spec in trials:
        why = trained_on(declared["metric"], terms_of_spec(spec))
        if why:
            raise ValueError(f"{where}: {declared['metric']} is a training objective of combination "
                             f"{spec.combination!r} ({why}); declare a metric no arm trained on")
