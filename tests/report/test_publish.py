"""Writing the report (ablate.report.publish) on synthetic experiments: the questions and the
report together, failed trials, the morphology definitions it used. (The whole report on a
real trained experiment: test_publish_real_experiment.py.)"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from ablate.report import stats
from ablate.report.collect import load_experiment
from ablate.report.publish import write_report
from tests.helpers.experiments import EDGE, FM, LPIPS, make_exp


def test_synthetic_questions_and_report(tmp_path):
    def value(c, s, i):
        # Changed with issue 27: a metric whose seeds do not vary gets no test, so every primary
        # here carries a seed effect (the same spread in every arm)
        u = np.random.default_rng(zlib.crc32(f"{c}/{s}".encode())).normal(0, 0.002, 3)
        out = {"ssim": 0.5 + 0.01 * np.cos(i) + u[0], "cldice": 0.6 + 0.01 * np.cos(2 * i) + u[1],
               "border_width_error": 0.8 + 0.01 * np.sin(2 * i) + u[2]}
        if c == "retfound-fundus_mae":
            out["ssim"] += 0.1 + 0.001 * i  # clearly above lpips'
        return out

    # Changed with issue 14: Q2 is judged only on a trained U-Net's vessel maps
    exp = make_exp(tmp_path / "e", {"first": {}, "lpips": LPIPS, "retfound-fundus_mae": FM, "edge": EDGE},
                   seeds=(0, 1, 2), value=value, segmenter="unet:vessel_unet")
    e = load_experiment(exp)
    assert e.baseline == "first" and "first combination" in e.baseline_reason
    a = stats.analyse(e)
    assert a.q1.verdict == "yes", a.q1.sentence
    assert "not RETFound" in a.q1.sentence and "RANDOM VGG16" in a.q1.sentence
    assert "ssim +0.10" in a.q1.sentence  # the difference in SSIM units, with its interval over seeds
    assert "carried by" in a.q1.sentence and "Power: with 3 vs 3 seeds" in a.q1.sentence  # issue 27
    assert "psnr " in a.q1.sentence and " dB [" in a.q1.sentence
    q1 = a.q1.tests.set_index("metric")
    assert q1.loc["ssim", "combination"] == "retfound-fundus_mae" and q1.loc["ssim", "reference"] == "lpips"
    # Changed with issue 13: every test metric is in the table, only the declared primaries vote
    assert set(q1.index[q1["votes"]]) == {"psnr", "ssim"} and (q1.loc[["psnr", "ssim"], "role"] == "primary").all()
    assert {"dice", "cldice", "betti0_error", "abs_delta_average_width", "fid@12"} <= set(q1.index)
    assert (q1.loc[["dice", "cldice"], "role"] == "secondary").all()
    assert a.q2.verdict == "not enough evidence", a.q2.sentence  # edge == base up to noise
    # Changed with issue 14, then 27: Q2's default primaries are the vessel-border width error and clDice
    assert set(a.q2.tests.loc[a.q2.tests["votes"], "metric"]) == {"border_width_error", "cldice"}
    # CI over 3 seeds = scipy's t-interval of the three trial means
    tm = e.trial_metrics[(e.trial_metrics["metric"] == "val/psnr") & (e.trial_metrics["combination"] == "edge")]
    lo, hi = sps.t.interval(0.95, 2, loc=tm["value"].mean(), scale=sps.sem(tm["value"]))
    row = a.summary.set_index(["metric", "combination"]).loc[("val/psnr", "edge")]
    assert np.isclose(row["ci_low"], lo) and np.isclose(row["ci_high"], hi)

    html_path = write_report(exp, n_images=4, hparams=False)  # no data recorded: no image grid, said so
    text = html_path.read_text()
    md = html_path.with_name("report.md").read_text()
    for doc in (text, md):
        assert "STAND-IN" in doc and "not RETFound" in doc and "RANDOM VGG16" in doc
        assert "YES" in doc.upper() and "image grid left out" in doc
    assert pd.read_parquet(html_path.with_name("questions.parquet"))["question"].tolist().count("Q1") == len(a.q1.tests)


@pytest.mark.fault
def test_failed_trials_still_give_a_report(tmp_path):
    exp = make_exp(tmp_path / "e", {"base": {}, "b": {}}, evaluated=False)
    r = pd.read_parquet(exp / "results.parquet")
    r["status"], r["error"] = "error", "RuntimeError: boom"
    r.to_parquet(exp / "results.parquet", index=False)
    md = write_report(exp, n_images=4, hparams=False).with_name("report.md").read_text()
    assert "trial base-s0-x_00000 is error: RuntimeError: boom" in md and "image grid left out" in md and "(empty)" in md


def test_report_says_which_morphology_definitions_it_used(tmp_path):
    exp = make_exp(tmp_path / "e", {"base": {}, "l2": {}})
    md = write_report(exp, n_images=0, hparams=False).with_name("report.md").read_text()
    assert "morphology definitions: ablate (not recorded" in md
    notes = json.loads((exp / "eval" / "notes.json").read_text())
    (exp / "eval" / "notes.json").write_text(json.dumps({**notes, "morphology": "automorph"}))
    md = write_report(exp, n_images=0, hparams=False).with_name("report.md").read_text()
    assert "morphology definitions: automorph (AutoMorph's M3 definitions" in md
