"""The report's two questions (ablate.report.questions) on synthetic experiments: better and identical arms, a one-seed grid, Q2 with the ridge fallback."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ablate.report import stats
from ablate.report.collect import load_experiment
from ablate.report.publish import write_report
from tests.helpers.experiments import EDGE, FM, LPIPS, SEG, make_exp


def test_synthetic_better_and_identical(tmp_path):
    # Changed with issue 13: comparisons use the seed as the unit (Welch on trial means), so
    # this needs 3 seeds; the one-seed case is test_one_seed_grid_answers_not_enough_seeds.
    exp = make_exp(tmp_path / "e", {"base": {}, "better": {}, "same": {}}, seeds=(0, 1, 2),
                   value=lambda c, s, i: {"psnr": 20 + np.sin(i) + 0.2 * np.sin(7 * s + len(c))  # seed effect
                                          + (1.0 + 0.1 * i if c == "better" else 0.0)})
    # `same` gets exactly `base`'s per-image values, seed by seed
    pi = pd.read_parquet(exp / "eval" / "per_image.parquet")
    base = pi[pi["combination"] == "base"].set_index(["seed", "image_id"])
    same = pi["combination"] == "same"
    keys = list(zip(pi.loc[same, "seed"], pi.loc[same, "image_id"]))
    for m in ("psnr", "ssim", "dice", "cldice", "betti0_error", "delta_average_width"):
        pi.loc[same, m] = base.loc[keys, m].to_numpy()
    pi.to_parquet(exp / "eval" / "per_image.parquet", index=False)
    e = load_experiment(exp)
    assert e.baseline == "base"
    a = stats.analyse(e)
    p = a.paired.set_index(["combination", "metric"])
    better = p.loc[("better", "psnr")]
    assert better["verdict"] == "better" and better["p_holm"] < 0.05
    # the difference in dB is the mean of 1 + 0.1 i over the 12 images, inside its interval
    seed_effect = lambda c: np.mean([0.2 * np.sin(7 * s + len(c)) for s in (0, 1, 2)])
    assert np.isclose(better["diff"], np.mean(1.0 + 0.1 * np.arange(12)) + seed_effect("better") - seed_effect("base"))
    assert better["ci_low"] < better["diff"] < better["ci_high"] and better["n_seeds"] == 3
    same = p.loc["same"].drop(index="fid@12")  # fid is one random number per trial in make_exp
    assert (same["diff"] == 0).all()
    spread = same["se"] > 0  # make_exp's metrics other than psnr do not vary over seeds
    assert spread.any() and (~spread).any()
    assert (same.loc[spread, "p"] == 1.0).all() and (same.loc[spread, "verdict"] == "not significant").all()
    # issue 27: seeds that do not vary give no test (before: p = 1 here, and p = 0 for any difference)
    assert same.loc[~spread, "p"].isna().all()
    assert same.loc[~spread, "verdict"].str.startswith("not voted: no seed-to-seed spread").all()
    assert p.loc[("same", "fid@12"), "verdict"].startswith("not voted: below sample-size floor (n = 12 images")
    s = a.summary.set_index(["metric", "combination"])
    assert s.loc[("psnr", "base"), "n"] == 3 and np.isfinite(s.loc[("psnr", "base"), "ci_low"])
    assert a.ranking.iloc[0]["combination"] == "better" and a.ranking.iloc[0]["p_first"] > 0.9
    assert a.q1.verdict == "not in this grid" and a.q2.verdict == "not in this grid"


def test_one_seed_grid_answers_not_enough_seeds(tmp_path):
    # huge effects on every primary metric, but one seed per arm: never yes/no
    def value(c, s, i):
        return {"psnr": 30.0, "ssim": 0.9, "cldice": 0.95} if c in ("retfound-fundus_mae", "edge") else {}

    exp = make_exp(tmp_path / "e", {"base": {}, "lpips": LPIPS, "retfound-fundus_mae": FM, "edge": EDGE}, value=value)
    e = load_experiment(exp)
    a = stats.analyse(e)
    for q in (a.q1, a.q2):
        assert q.verdict == "not enough seeds", q.sentence
        assert "1 vs 1 seeds" in q.sentence and "needs 3 finished seeds per arm" in q.sentence
        assert not q.tests["votes"].any() and not q.tests["significant"].any()
    voting = a.paired[a.paired["excluded"] == ""]  # fid@12 is below its floor whatever the seeds
    assert len(voting) and voting["verdict"].str.startswith("not enough seeds").all()
    s = a.summary.set_index(["metric", "combination"])
    assert s.loc[("psnr", "base"), "note"] == "n=1, no CI" and math.isnan(s.loc[("psnr", "base"), "ci_low"])
    md = write_report(exp, n_images=0, hparams=False).with_name("report.md").read_text()
    assert "FEWER THAN 3 FINISHED SEEDS" in md and "**NOT ENOUGH SEEDS**" in md


def test_q2_with_the_ridge_fallback_says_segmenter_not_trained_and_shows_the_numbers(tmp_path):
    # issue 27: Q2's border measure is an error (lower is better); the edge arm's borders are closer
    edge_sharper = lambda c, s, i: {"border_width_error": 0.5 + 0.01 * np.sin(2 * i) + 0.01 * s} if c == "edge" else {}
    for seg, expect in ((SEG, "segmenter not trained"), ("unet:vessel_unet", "yes")):
        exp = make_exp(tmp_path / seg.replace(":", "_"), {"base": {}, "edge": EDGE}, seeds=(0, 1, 2),
                       value=edge_sharper, segmenter=seg)
        a = stats.analyse(load_experiment(exp))
        assert a.q2.verdict == expect, a.q2.sentence
        voted = a.q2.tests.loc[a.q2.tests["votes"]].set_index("metric")
        assert voted.loc["border_width_error", "diff"] < -0.25  # the numbers are there either way
        assert "border_width_error -0.29" in a.q2.sentence
        assert ("SEGMENTER NOT TRAINED" in a.q2.sentence and "ridge:meijering+otsu" in a.q2.sentence) == (seg == SEG)
