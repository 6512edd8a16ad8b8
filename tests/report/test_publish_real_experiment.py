"""The whole report (HTML, Markdown, HParams) on a real trained-and-evaluated experiment (the session's `tiny_experiment`; its own file: it starts Ray)."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from ablate.report.publish import write_report

# ---------------------------------------------------------------- the real experiment


@pytest.fixture(scope="module")
def real_report(tiny_experiment, tmp_path_factory):
    exp = tmp_path_factory.mktemp("report") / "exp"
    shutil.copytree(tiny_experiment, exp)
    return exp, write_report(exp, n_images=4)


@pytest.mark.ray
def test_report_lists_every_configuration_and_metric(real_report):
    exp, html_path = real_report
    text, md = html_path.read_text(), html_path.with_name("report.md").read_text()
    results = pd.read_parquet(exp / "results.parquet")
    per_image = pd.read_parquet(exp / "eval" / "per_image.parquet")
    metrics = [c for c in per_image.columns if c in ("psnr", "ssim", "ms_ssim", "dice", "cldice", "betti0_error",
                                                     "betti1_error") or c.startswith("lpips")]
    metrics += ["abs_" + c for c in per_image.columns if c.startswith("delta_")]
    metrics += [c[5:] for c in results.columns if c in ("test/fid", "test/kid") or c.startswith("test/fd_")]
    metrics += [c for c in results.columns if c.startswith("val/")]
    assert {"psnr", "ssim", "dice", "cldice", "abs_delta_average_width", "fid", "kid", "val/psnr"} <= set(metrics)
    for doc in (text, md):
        for c in results["combination"].unique():
            assert f"| {c} |" in doc or f">{c}<" in doc, c
        for m in metrics:
            assert m in doc, m
        assert "n=1, no CI" in doc  # one seed per combination in this grid


@pytest.mark.ray
def test_report_statistics_match_scipy(real_report):
    exp, html_path = real_report
    pi = pd.read_parquet(exp / "eval" / "per_image.parquet")
    summary = pd.read_parquet(html_path.with_name("summary.parquet")).set_index(["metric", "combination"])
    paired = pd.read_parquet(html_path.with_name("paired.parquet"))
    for c in ("l1", "l2"):  # one seed each: the mean is the image mean, and no CI
        assert np.isclose(summary.loc[("psnr", c), "mean"], pi[pi["combination"] == c]["psnr"].mean())
        assert summary.loc[("psnr", c), "note"] == "n=1, no CI"
    a = pi[pi["combination"] == "l2"].set_index("image_id")
    b = pi[pi["combination"] == "l1"].set_index("image_id").loc[a.index]
    p = paired.set_index("metric")
    assert set(paired["combination"]) == {"l2"} and set(paired["reference"]) == {"l1"}  # l1: grid's first
    # Changed with issue 13: the seed is the unit; one seed per arm gives no test, and the
    # per-image Wilcoxon is a descriptive column (still checked against scipy)
    assert paired["p"].isna().all() and not paired["significant"].any()
    for m, x, y in (("psnr", a["psnr"], b["psnr"]), ("dice", a["dice"], b["dice"]),
                    ("abs_delta_average_width", a["delta_average_width"].abs(), b["delta_average_width"].abs())):
        ok = x.notna() & y.notna()
        ref = sps.wilcoxon((x - y)[ok].to_numpy())
        assert np.isclose(p.loc[m, "wilcoxon_p"], ref.pvalue), m
        assert p.loc[m, "n_images"] == int(ok.sum())
        assert np.isclose(p.loc[m, "diff"], summary.loc[(m, "l2"), "mean"] - summary.loc[(m, "l1"), "mean"]), m
        if m != "psnr":  # psnr: trained on, below
            assert p.loc[m, "verdict"].startswith("not enough seeds (1 vs 1"), m
    trained = p.loc["psnr", "trained_on"]  # l2 trains on the MSE, a function of which PSNR is
    assert "`l2`: l2 term" in trained and p.loc["psnr", "verdict"].startswith("not voted: trained on")


@pytest.mark.ray
def test_report_html_is_self_contained_with_image_grid(real_report):
    exp, html_path = real_report
    text = html_path.read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//)""", text, re.IGNORECASE)
    assert "<script" not in text.lower() and "<link" not in text.lower() and "@import" not in text and "url(" not in text
    srcs = re.findall(r"""<img[^>]*\ssrc="([^"]*)\"""", text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    tables = re.findall(r'<table class="imgrid">(.*?)</table>', text, re.DOTALL)
    assert tables
    configs = []
    for grid in tables:  # each table: the original, then up to 3 configurations
        groups = re.findall(r'<colgroup data-config="([^"]+)"', grid)
        assert groups[0] == "original"
        configs += groups[1:]
        rows = re.findall(r'<tr data-image="([^"]+)">(.*?)</tr>', grid, re.DOTALL)
        assert len(rows) == 4 and len({r[0] for r in rows}) == 4
        ids = set(pd.read_parquet(exp / "eval" / "per_image.parquet")["image_id"])
        assert {r[0] for r in rows} <= ids
        for _, cells in rows:  # label + original (photo, map) + 3 per configuration
            n = len(groups) - 1
            assert cells.count("<td") == 1 + 2 + 3 * n and cells.count("<img") == 2 + 3 * n
    assert configs == ["l1", "l2"]  # one column group per configuration, in grid order
    assert text.count("<h3>") >= 4  # one plot per metric group: fidelity, distribution, agreement, morphology, val


@pytest.mark.ray
def test_hparams_visible_to_tensorboard(real_report):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    exp, html_path = real_report
    results = pd.read_parquet(exp / "results.parquet")
    summary = pd.read_parquet(html_path.with_name("summary.parquet")).set_index(["metric", "combination"])
    n_images = pd.read_parquet(exp / "eval" / "per_image.parquet")["image_id"].nunique()
    for r in results.to_dict("records"):
        ea = EventAccumulator(str(exp / "tensorboard" / r["trial"] / "hparams"))
        ea.Reload()
        content = ea.PluginTagToContent(metadata.PLUGIN_NAME)
        start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
        hp = {k: (v.string_value or v.number_value) for k, v in start.hparams.items()}
        assert hp["combination"] == r["combination"] and hp["seed"] == r["seed"]
        assert hp["loss.l1.weight" if r["combination"] == "l1" else "loss.l2.weight"] == 1.0
        assert hp["loss.l2.weight" if r["combination"] == "l1" else "loss.l1.weight"] == 0.0  # absent term
        assert {"model.preset", "data.size", "train.lr", "train.steps", "loss.codebook.weight"} <= set(hp)
        experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
        metric_tags = {m.name.tag for m in experiment.metric_infos}
        fid = f"test/fid@{n_images}"  # distribution metrics carry their sample size (issue 13)
        assert {"test/psnr", fid, "test/cldice", "val/psnr"} <= metric_tags
        scalars = set(ea.Tags()["scalars"])
        own = {c for c in results.columns if c.startswith("val/") and np.isfinite(r[c])}
        assert own and own <= scalars <= metric_tags  # this trial's metrics; the summary lists every trial's
        assert {"test/psnr", fid, "test/cldice", "test/abs_delta_average_width"} <= scalars
        (ev,) = ea.Scalars("test/psnr")
        assert np.isclose(ev.value, summary.loc[("psnr", r["combination"]), "mean"], rtol=1e-6)
        assert ev.step == r["steps"]
