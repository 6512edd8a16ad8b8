"""Issue 27: a declared fidelity non-inferiority margin (`questions.non_inferiority`): parsed and
checked with the search space, decided per arm against the baseline on the seeds (one-sided
95 % bound of the gain above -margin), said in the report only where declared."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from scipy import stats as sps

from ablate.config import ConfigError, load_grid
from ablate.report.inference import welch
from ablate.report.publish import write_report
from ablate.report.verdicts import non_inferiority
from tests.helpers import REPO as ROOT
from tests.helpers.experiments import make_exp

EDGES = ROOT / "search_spaces" / "edges.yaml"
DECLARED = "  non_inferiority: {metric: psnr, margin: 0.5}\n"


# ---------------------------------------------------------------- parsing


def test_edges_declares_psnr_half_a_db_and_losses_declares_none():
    assert load_grid(EDGES).questions["non_inferiority"] == {"metric": "psnr", "margin": 0.5}
    assert "non_inferiority" not in load_grid(ROOT / "search_spaces" / "losses.yaml").questions


@pytest.mark.parametrize(("line", "match"), [
    ("  non_inferiority: {metric: psnr}\n", r"questions\.non_inferiority: expected \{metric: psnr, margin: 0\.5\}"),
    ("  non_inferiority: {metric: psnr, margin: 0.5, side: low}\n", r"questions\.non_inferiority: expected"),
    ("  non_inferiority: 0.5\n", r"questions\.non_inferiority: expected"),
    ("  non_inferiority: {metric: sharpness, margin: 0.5}\n", r"questions\.non_inferiority\.metric: unknown metric 'sharpness'; valid: "),
    ("  non_inferiority: {metric: 'lpips[random-vgg]', margin: 0.1}\n",
     r"questions\.non_inferiority\.metric: lpips\[random-vgg\] is no measure of fidelity .*declare one, e\.g\. psnr"),
    ("  non_inferiority: {metric: psnr, margin: 0}\n",
     r"questions\.non_inferiority\.margin: expected a positive number in psnr's units \(e\.g\. 0\.5 for 0\.5 dB\), got 0"),
    ("  non_inferiority: {metric: psnr, margin: -0.5}\n", r"questions\.non_inferiority\.margin: expected a positive number"),
    ("  non_inferiority: {metric: psnr, margin: 0.5 dB}\n", r"questions\.non_inferiority\.margin: .*got '0\.5 dB'"),
    ("  non_inferiority: {metric: psnr, margin: true}\n", r"questions\.non_inferiority\.margin: .*got True"),
    ("  non_inferiority: {metric: psnr, margin: .nan}\n", r"questions\.non_inferiority\.margin: .*got nan"),
], ids=["no-margin", "extra-key", "not-a-mapping", "unknown-metric", "control", "zero", "negative", "text", "bool", "nan"])
def test_bad_declarations_name_the_key_and_the_fix(tmp_path, line, match):
    p = tmp_path / "g.yaml"
    p.write_text(EDGES.read_text().replace(DECLARED, line))
    with pytest.raises(ConfigError, match=match) as info:
        load_grid(p)
    assert str(p) in str(info.value)


def test_a_metric_an_arm_trained_on_is_refused(tmp_path):
    # an l2 arm is judged on PSNR by its own objective: the rule check_q1_primary applies to Q1
    p = tmp_path / "g.yaml"
    text = EDGES.read_text().replace("combinations:\n  none: {}\n",
                                     "combinations:\n  none: {}\n  l2_arm:\n    losses: {l2: {weight: 1.0}}\n")
    p.write_text(text)
    with pytest.raises(ConfigError, match=r"questions\.non_inferiority\.metric: psnr is a training objective of "
                                          r"combination 'l2_arm' \(l2 term .*declare a metric no arm trained on"):
        load_grid(p)
    p.write_text(text.replace(DECLARED, "  non_inferiority: {metric: ssim, margin: 0.01}\n"))
    assert load_grid(p).questions["non_inferiority"] == {"metric": "ssim", "margin": 0.01}


def test_a_metric_without_a_better_direction_is_refused(monkeypatch):
    # none in today's catalogue, but MetricInfo allows one (better=None: a descriptive number)
    from ablate.report import declared, metric_names

    monkeypatch.setattr(metric_names, "direction", lambda m: None)
    with pytest.raises(ValueError, match=r"q\.non_inferiority\.metric: psnr has no better direction"):
        declared.parse_questions({"non_inferiority": {"metric": "psnr", "margin": 0.5}}, "q")


# ---------------------------------------------------------------- the decision rule


def record(arm, baseline, metric="psnr", better="higher", excluded=""):
    return {"metric": metric, "direction": better, "excluded": excluded, **welch(arm, baseline)}


def test_higher_is_better_shown_and_not_shown_by_the_one_sided_bound():
    base = np.array([30.0, 30.1, 29.9])
    se = np.sqrt(2 * 0.1 ** 2 / 3)
    t95 = sps.t.ppf(0.95, 2)  # Hsu's df: 3 seeds per arm -> 2
    close = non_inferiority(record(base - 0.1, base), 0.5)
    assert close["decision"] == "shown"
    assert np.isclose(close["gain"], -0.1) and np.isclose(close["bound"], -0.1 - t95 * se)
    # the estimate alone (-0.4) is inside the margin; the bound (-0.64) is not: not shown
    near = non_inferiority(record(base - 0.4, base), 0.5)
    assert near["decision"] == "not shown" and near["bound"] < -0.5 < near["gain"]
    assert non_inferiority(record(base - 0.6, base), 0.5)["decision"] == "not shown"
    assert non_inferiority(record(base + 1.0, base), 0.5)["decision"] == "shown"


def test_unequal_seed_counts_use_hsu_df():
    arm, base = np.array([29.8, 30.0, 30.1]), np.array([30.0, 30.1, 29.9, 30.2, 29.95])
    r = non_inferiority(record(arm, base), 0.5)
    se = np.sqrt(arm.var(ddof=1) / 3 + base.var(ddof=1) / 5)
    assert np.isclose(r["bound"], arm.mean() - base.mean() - sps.t.ppf(0.95, 2) * se)


def test_lower_is_better_flips_the_sign():
    base = np.array([0.80, 0.81, 0.79])
    slightly_worse = non_inferiority(record(base + 0.01, base, "border_width_error", "lower"), 0.05)
    assert slightly_worse["decision"] == "shown" and np.isclose(slightly_worse["gain"], -0.01)
    worse = non_inferiority(record(base + 0.04, base, "border_width_error", "lower"), 0.05)
    assert worse["decision"] == "not shown" and np.isclose(worse["gain"], -0.04) and worse["bound"] < -0.05
    better = non_inferiority(record(base - 0.04, base, "border_width_error", "lower"), 0.05)
    assert better["decision"] == "shown" and np.isclose(better["gain"], 0.04)


def test_not_decided_with_too_few_seeds_no_spread_or_an_exclusion():
    two = non_inferiority(record([30.0, 30.1], [30.0, 30.2]), 0.5)
    assert two["decision"] == "not decided" and two["why"] == "2 vs 2 seeds, needs 3 per arm"
    flat = non_inferiority(record([30.0] * 3, [30.2] * 3), 0.5)
    assert flat["decision"] == "not decided" and flat["why"].startswith("no seed-to-seed spread")
    assert np.isclose(flat["gain"], -0.2) and np.isnan(flat["bound"])
    trained = non_inferiority(record([30.0, 30.1, 29.9], [30.0, 30.1, 29.9], excluded="trained on (`a`: l2 term)"), 0.5)
    assert trained["decision"] == "not decided" and trained["why"] == "trained on (`a`: l2 term)"


# ---------------------------------------------------------------- the report


def _exp(tmp_path, declared, seeds=(0, 1, 2)):
    def value(c, s, i):  # a seed effect of 0.1 dB; `close` loses 0.1 dB, `far` 2 dB
        shift = {"base": 0.0, "close": -0.1, "far": -2.0}[c]
        return {"psnr": 20 + np.sin(i) + 0.1 * np.sin(7 * s + len(c)) + shift}

    exp = make_exp(tmp_path / "e", {"base": {}, "close": {}, "far": {}}, seeds=seeds, value=value)
    g = json.loads((exp / "grid.json").read_text())
    g["questions"] = {"q1": {"primary": ["psnr", "ssim"]}, "q2": {"primary": ["border_width_error", "cldice"]},
                      **({"non_inferiority": declared} if declared else {})}
    (exp / "grid.json").write_text(json.dumps(g))
    return exp


def test_report_says_shown_and_not_shown_per_arm_where_declared(tmp_path):
    html = write_report(_exp(tmp_path, {"metric": "psnr", "margin": 0.5}), n_images=0, hparams=False)
    md = html.with_name("report.md").read_text()
    assert "### Non-inferiority against the baseline" in md
    claim = r"not worse than the baseline by more than 0\.5 dB in psnr"
    assert re.search(rf"- `close`: {claim}: shown \(gain -0\.0\d+ dB, one-sided 95% lower bound -0\.\d+ dB > "
                     r"-0\.5 dB; 3 vs 3 seeds\)", md)
    assert re.search(rf"- `far`: {claim}: not shown \(gain -1\.9\d dB, one-sided 95% lower bound -2\.\d+ dB <= "
                     r"-0\.5 dB; 3 vs 3 seeds\)", md)
    assert "`base`: not worse" not in md and "of its gain on the baseline `base` (arm - baseline" in md
    assert "`far`: not worse than the baseline by more than 0.5 dB in psnr: not shown" in html.read_text()


def test_report_says_not_decided_with_one_seed(tmp_path):
    md = write_report(_exp(tmp_path, {"metric": "psnr", "margin": 0.5}, seeds=(0,)), n_images=0,
                      hparams=False).with_name("report.md").read_text()
    assert "`close`: not worse than the baseline by more than 0.5 dB in psnr: not decided (1 vs 1 seeds, needs 3 per arm" in md


def test_report_says_nothing_of_non_inferiority_without_a_margin(tmp_path):
    # the same experiment with a margin says it (no default margin is invented without one)
    without = write_report(_exp(tmp_path / "without", None), n_images=0, hparams=False)
    for text in (without.with_name("report.md").read_text(), without.read_text()):
        assert "Non-inferiority" not in text and "not worse than the baseline" not in text
    declared = write_report(_exp(tmp_path / "with", {"metric": "psnr", "margin": 0.5}), n_images=0, hparams=False)
    for text in (declared.with_name("report.md").read_text(), declared.read_text()):
        assert "Non-inferiority" in text and "not worse than the baseline" in text
