"""The paper's two questions, answered with pre-declared primary metrics.

Q1 compares each combination with a `foundation` term (and no `lpips` term) with the
`lpips` combination of the same edge setting; Q2 each combination with an edge channel or
`edge` loss (and neither feature term) with the baseline. Each question's one or two
primary metrics are declared in the search space (`questions:` in the YAML, see
ablate.config.parse_questions) and vote; every other test metric is shown as secondary.
Holm runs over all the question's voting tests (all pairs x primary metrics), and the
verdict rules are ablate.report.verdicts'. Where the search space declares a
non-inferiority margin (`questions.non_inferiority`), each arm is also judged against the
baseline for "not worse by more than the margin" (`answer_non_inferiority`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from ablate.report.collect import Experiment, edge_setting, stand_in_notes, uses
from ablate.report.compare import as_table, compare_pair
from ablate.report.declared import DEFAULT_QUESTIONS
from ablate.report.inference import MIN_SEEDS, detectable_effect
from ablate.report.judge_line import JudgeLine, judge_line
from ablate.report.metric_names import direction, unit
from ablate.report.verdicts import ALPHA, carried_by, headline, judge, non_inferiority, pair_verdict


@dataclass
class Declared:
    q1: list[str]
    q2: list[str]
    ranking: list[str]
    source: str  # where they were declared, in words
    non_inferiority: dict | None = None  # {metric, margin} as declared; None: not declared, nothing said
    q1s: list[str] | None = None  # the samples' Q1 / Q2 primaries; None: not declared, no verdict
    q2s: list[str] | None = None


def declared_questions(e: Experiment) -> Declared:
    """The experiment's primary metrics: as `ablate launch` recorded them in grid.json, else
    the defaults (DEFAULT_QUESTIONS), and `source` says which."""
    from ablate.report.declared import parse_questions

    raw, source = e.grid.get("questions"), "declared in the search space, as recorded in grid.json"
    if raw is None:
        raw, source = DEFAULT_QUESTIONS, ("defaults: the search space declared no `questions:`, or its grid.json "
                                          "predates them")
    try:
        q = parse_questions(raw, f"{e.location}/grid.json")
    except ValueError as ex:
        e.warnings.append(f"{ex}; the default primary metrics are used instead")
        q, source = parse_questions(DEFAULT_QUESTIONS, "defaults"), "defaults: grid.json's `questions` is invalid"
    return Declared(q["q1"]["primary"], q["q2"]["primary"], q["ranking"], source, q.get("non_inferiority"),
                    q["q1s"]["primary"] if "q1s" in q else None, q["q2s"]["primary"] if "q2s" in q else None)


@dataclass
class Answer:
    question: str
    verdict: str  # yes | no | mixed | not enough evidence | not enough seeds | not in this grid | evaluation missing
    #               | segmenter not trained (Q2 only: vessel maps from the ridge fallback)
    sentence: str
    tests: pd.DataFrame = field(default_factory=pd.DataFrame)  # every test behind it, primary and secondary
    pairs: list[tuple[str, str, str]] = field(default_factory=list)  # (candidate, reference, pair verdict)
    judge: JudgeLine | None = None  # a vessel verdict's: how far its segmenter can be trusted on these originals


def _num(x: float, signed: bool = False) -> str:
    if math.isnan(x):
        return "nan"
    s = f"{x:+.3g}" if signed else f"{x:.3g}"
    return s if abs(x) >= 1e-3 or x == 0 else (f"{x:+.2e}" if signed else f"{x:.2e}")


def effect_text(r: dict) -> str:
    """`psnr +0.41 dB [-1.2, +2.0] (Holm p = 0.61)`: the difference candidate - reference."""
    u = unit(r["metric"])
    if r["diff"] != r["diff"]:
        return f"{r['metric']}: no value"
    ci = (f" [{_num(r['ci_low'], True)}, {_num(r['ci_high'], True)}]" if r["ci_low"] == r["ci_low"]
          else f" (no interval: {r.get('note') or 'one seed'})")
    p = f"Holm p = {_num(r['p_holm'])}" if r.get("votes") else f"p = {_num(r['p'])}, not voted"
    return f"{r['metric']} {_num(r['diff'], True)}{u}{ci} ({p}; {r['mean']:.4g} vs {r['reference_mean']:.4g})"


def pair_sentence(a: str, b: str, verdict: str, judged: list[dict], rows: dict) -> str:
    primary = [r for r in judged if r["role"] == "primary"]
    seeds = f"{min((r['n_seeds'] for r in primary), default=0)} vs {min((r['n_seeds_reference'] for r in primary), default=0)} seeds"
    body = "; ".join(effect_text(r) for r in primary if not r["excluded"]) or "no primary metric could vote"
    left_out = [f"{r['metric']} ({r['excluded']})" for r in primary if r["excluded"]]
    trained = sorted({r["metric"] for r in judged if r["trained_on"]})
    text = f"`{a}` vs `{b}` ({seeds}): {verdict} - {body}"
    if verdict == "not enough seeds":
        text += f" [needs {MIN_SEEDS} finished seeds per arm]"
    if left_out:
        text += f"; primary but not voted: {', '.join(left_out)}"
    if trained:
        text += f"; trained on by an arm, not voted: {', '.join(trained)}"
    caveat = "; ".join(stand_in_notes(rows[a]) + stand_in_notes(rows[b]))
    return text + (f" [stand-in: {caveat}]" if caveat else "")


def answer(title: str, lead: str, pairs: list[tuple[str, str]], primary: list[str], e: Experiment,
           source: str, compare=compare_pair) -> Answer:
    """Judge every pair's tests as one Holm family and phrase the verdicts. `compare(e, a, b,
    primary)`: the records of one pair (compare_pair for the test images' metrics;
    ablate.report.sample_questions for the samples')."""
    rows = {r["combination"]: r for r in e.trials.drop_duplicates("combination").to_dict("records")}
    per_pair = [compare(e, a, b, primary) for a, b in pairs]
    flat = judge([r for recs in per_pair for r in recs])
    judged, k = [], 0
    for recs in per_pair:
        judged.append(flat[k:k + len(recs)])
        k += len(recs)
    verdicts = [(a, b, pair_verdict(j)) for (a, b), j in zip(pairs, judged)]
    word = headline([v for *_, v in verdicts])
    m = sum(r["votes"] for r in flat)
    body = " | ".join(pair_sentence(a, b, v, j, rows) for (a, b, v), j in zip(verdicts, judged))
    sentence = (f"{lead}: {word.upper()}{carried_text(flat, word)}. Primary metrics {', '.join(primary)} "
                f"({source}); Holm over the {m} voting test(s) of this question, alpha {ALPHA}; difference = "
                f"first - second with its 95% t interval over seeds (Hsu's df). {body}. {power_line(flat)}")
    return Answer(title, word, sentence, as_table(flat), verdicts)


def carried_text(judged: list[dict], word: str) -> str:
    """`, carried by cldice (`edge` vs `base`, better) alone`: the tests the headline rests on."""
    behind = carried_by(judged, word)
    if not behind:
        return ""
    tests = [f"{r['metric']} (`{r['combination']}` vs `{r['reference']}`, {r['effect']})" for r in behind]
    primaries = {r["metric"] for r in judged if r["role"] == "primary" and not r["excluded"]}
    alone = " alone" if len({r["metric"] for r in behind}) < len(primaries) else ""
    return f", carried by {', '.join(tests)}{alone}"


def power_line(judged: list[dict], power: float = 0.8) -> str:
    """What this grid can detect: the smallest true difference one primary test finds with at
    least `power` probability, in seed SDs and in each primary metric's units (at the seed SD
    pooled over the question's arms)."""
    primary = [r for r in judged if r["role"] == "primary" and not r["excluded"] and r["direction"] is not None]
    if not primary:
        return ""
    na = min(r["n_seeds"] for r in primary)
    nb = min(r["n_seeds_reference"] for r in primary)
    tests = max(1, sum(r["votes"] for r in judged) or len(primary))
    delta = detectable_effect(na, nb, tests, power, ALPHA)
    if not math.isfinite(delta):
        return f"Power: not computable at {na} vs {nb} seeds."
    units = []
    for metric in dict.fromkeys(r["metric"] for r in primary):
        sds = [sd for r in primary if r["metric"] == metric for sd in (r["sd"], r["sd_reference"]) if math.isfinite(sd)]
        seed_sd = math.sqrt(sum(sd * sd for sd in sds) / len(sds)) if sds else 0.0
        if seed_sd > 0:  # a metric whose seeds do not vary has no test, so no detectable size
            units.append(f"{metric} {_num(delta * seed_sd)}{unit(metric)}")
    at_spread = f"; at this grid's seed spread that is {', '.join(units)}" if units else ""
    return (f"Power: with {na} vs {nb} seeds and {tests} voting test(s), one test finds a true difference of "
            f"{delta:.2g} seed SDs with at least {power:.0%} probability (Holm's first step, Hsu's df){at_spread}; "
            "smaller true effects mostly come out as \"not enough evidence\".")


def q1_pairs(e: Experiment) -> tuple[list[tuple[str, str]], str]:
    """Q1's pairs (foundation arm, LPIPS arm of the same edge setting), or no pair and why
    (the end of a "Not in this grid: ..." sentence). Q1 and Q1s (samples) ask of these."""
    rows = {r["combination"]: r for r in e.trials.drop_duplicates("combination").to_dict("records")}
    fm = [c for c in e.combinations if uses(rows[c], "foundation") and not uses(rows[c], "lpips")]
    lp = [c for c in e.combinations if uses(rows[c], "lpips") and not uses(rows[c], "foundation")]
    pairs = []
    for f in fm:
        match = [c for c in lp if edge_setting(rows[c]) == edge_setting(rows[f])]
        if match:
            pairs.append((f, match[0]))
    have = f"foundation: {fm or 'none'}, lpips: {lp or 'none'}"
    return pairs, ("" if pairs else f"it needs a combination with a `foundation` term and one with an `lpips` term "
                   f"and the same edge setting ({have}).")


def q2_pairs(e: Experiment) -> tuple[list[tuple[str, str]], str]:
    """Q2's pairs (each edge arm without a feature term, the baseline), or no pair and why.
    Q2 and Q2s (samples) ask of these."""
    rows = {r["combination"]: r for r in e.trials.drop_duplicates("combination").to_dict("records")}

    def has_edge(c):
        return edge_setting(rows[c]) is not None or uses(rows[c], "edge")

    def plain(c):
        return not uses(rows[c], "lpips") and not uses(rows[c], "foundation")

    if has_edge(e.baseline):
        return [], f"the baseline `{e.baseline}` itself has an edge term."
    edge = [c for c in e.combinations if c != e.baseline and has_edge(c) and plain(c)]
    if not edge:
        return [], (f"no combination adds an edge channel or `edge` loss to the baseline `{e.baseline}` without a "
                    "feature term.")
    return [(c, e.baseline) for c in edge], ""


def answer_q1(e: Experiment, declared: Declared) -> Answer:
    q = "Q1: does the foundation-model feature loss beat the LPIPS perceptual loss?"
    if not e.evaluated:
        return Answer(q, "evaluation missing", f"{q} Cannot say: {e.eval_missing}")
    pairs, why = q1_pairs(e)
    if not pairs:
        return Answer(q, "not in this grid", f"{q} Not in this grid: {why}")
    return answer(q, "Q1 (foundation-model term vs LPIPS term)", pairs, declared.q1, e, declared.source)


def answer_q2(e: Experiment, declared: Declared) -> Answer:
    q = "Q2: does the edge term sharpen vessels against the baseline?"
    if not e.evaluated:
        return Answer(q, "evaluation missing", f"{q} Cannot say: {e.eval_missing}")
    pairs, absent = q2_pairs(e)
    if not pairs:
        return Answer(q, "not in this grid", f"{q} Not in this grid: {absent}")
    a = answer(q, "Q2 (edge term vs baseline)", pairs, declared.q2, e, declared.source)
    a.judge = judge_line(e.notes)
    return without_untrained_judge(a, untrained_segmenter(e))


def without_untrained_judge(a: Answer, why: str | None, primary: str = "") -> Answer:
    """A vessel question's answer when its maps came from no trained U-Net (`why`): the numbers
    stay (the tests table and the sentence), the verdict does not stand; said after "not enough
    seeds" instead. `primary` names the vessel primaries in the sentence, when some are not."""
    if why and a.verdict == "not enough seeds":
        a.sentence += f" Even with the seeds: {why}."
    elif why:
        a.sentence = (f"{a.question} SEGMENTER NOT TRAINED: {why}{primary}. Without a verdict, the comparison it "
                      f"would have made: {a.sentence}")
        a.verdict = "segmenter not trained"
    return a


def untrained_segmenter(e: Experiment) -> str | None:
    """Why the experiment's vessel maps cannot judge Q2, or None when a trained U-Net drew them.

    The ridge fallback (Meijering / Frangi on the green channel + Otsu) is the very filter the
    edge arm learns to reproduce, and it re-equalises (CLAHE) and re-thresholds each image, so
    a reconstruction with half the vessel contrast still matches its original's map."""
    return segmenter_not_trained(e.segmenter or "")


def segmenter_not_trained(name: str) -> str | None:
    """`untrained_segmenter` for a segmenter's name as evaluation recorded it ("" = not recorded)."""
    if name.startswith("unet:"):
        return None
    if not name:
        return "the evaluation does not say which segmenter drew the vessel maps"
    return (f"vessel maps drawn by {name}, the classical fallback: it is the ridge filter an edge arm "
            f"learns and it re-normalises every image's contrast, so it cannot judge an edge term; "
            f"train the U-Net (`ablate segmenter train`) and run `ablate evaluate` again")


@dataclass
class NonInferiority:
    """The declared non-inferiority check: the rule in one sentence (`lead`), then one line per
    arm (`arms`: (combination, decision, line)); no arms where the evaluation is missing."""
    lead: str
    arms: list[tuple[str, str, str]] = field(default_factory=list)


def answer_non_inferiority(e: Experiment, declared: Declared) -> NonInferiority | None:
    """Each combination but the baseline against the baseline: not worse by more than the
    declared margin in the declared metric (ablate.report.verdicts.non_inferiority). None
    where the search space declared no margin: the report then says nothing about it."""
    if declared.non_inferiority is None:
        return None
    metric, margin = declared.non_inferiority["metric"], declared.non_inferiority["margin"]
    u, b = unit(metric), e.baseline
    claim = f"not worse than the baseline by more than {_num(margin)}{u} in {metric}"
    gain = "arm - baseline: higher is better" if direction(metric) == "higher" else "baseline - arm: lower is better"
    lead = (f"Non-inferiority ({declared.source}): an arm is {claim} when the lower end of the one-sided 95% t "
            f"interval over seeds (Hsu's df) of its gain on the baseline `{b}` ({gain}) is above "
            f"-{_num(margin)}{u}; each arm on its own, not corrected across arms.")
    if not e.evaluated:
        return NonInferiority(f"{lead} Cannot say: {e.eval_missing}")
    arms = []
    for a in (c for c in e.combinations if c != b):
        records = [r for r in compare_pair(e, a, b, [metric]) if r["role"] == "primary"]
        if not records:
            arms.append((a, "not decided", f"`{a}`: {claim}: not decided ({metric} is not in the evaluation)"))
            continue
        r = records[0]
        d = non_inferiority(r, margin)
        seeds = f"{r['n_seeds']} vs {r['n_seeds_reference']} seeds"
        est = f"gain {_num(d['gain'], True)}{u}" if math.isfinite(d["gain"]) else "no estimate"
        if d["decision"] == "not decided":
            line = f"`{a}`: {claim}: not decided ({d['why']}; {est}, {seeds})"
        else:
            side = ">" if d["decision"] == "shown" else "<="
            line = (f"`{a}`: {claim}: {d['decision']} ({est}, one-sided 95% lower bound {_num(d['bound'], True)}{u} "
                    f"{side} -{_num(margin)}{u}; {seeds})")
        arms.append((a, d["decision"], line))
    return NonInferiority(lead, arms)
