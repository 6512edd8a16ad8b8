"""Evaluations on other datasets (ablate.report.other_data): each its own section."""

from __future__ import annotations

import json

import pandas as pd

from ablate.report.publish import write_report
from tests.helpers.experiments import make_exp


def test_other_dataset_evaluations_are_their_own_section(tmp_path):
    exp = make_exp(tmp_path / "e", {"base": {}, "l2": {}}, seeds=(0, 1))
    own = pd.read_parquet(exp / "eval" / "per_image.parquet")
    other = exp / "eval" / "datasets" / "camera2"
    other.mkdir(parents=True)
    pi = own.copy()
    pi["psnr"] = 11.0  # a different camera: very different numbers
    pi.to_parquet(other / "per_image.parquet", index=False)
    (other / "notes.json").write_text(json.dumps({"data": "/data/camera2", "splits": ["test"], "images": 12}))
    md = write_report(exp, n_images=0, hparams=False).with_name("report.md").read_text()
    main, section = md.split("## Other dataset: camera2")
    assert "12 images of /data/camera2 (test split(s))" in section and "| 11 " in section
    assert "| 11 " not in main  # the grid's own tables keep the grid's own numbers


def test_the_papers_questions_are_asked_again_on_another_dataset_from_its_numbers_only(tmp_path):
    """Issue 31: whether a verdict holds on another camera. Q1 on camera2 uses camera2's
    per-image numbers (the trial means of its per_image.parquet, Welch with Hsu's df over
    seeds); the grid's own verdict stays the grid's own."""
    import numpy as np
    from scipy import stats

    from tests.helpers.experiments import FM, LPIPS

    seeds = (0, 1, 2)
    exp = make_exp(tmp_path / "e", {"fm": FM, "lpips": LPIPS}, seeds=seeds,
                   value=lambda c, s, i: {"psnr": 20 + 0.3 * s + np.sin(i)})  # no difference on the grid's data
    own = pd.read_parquet(exp / "eval" / "per_image.parquet")
    other = exp / "eval" / "datasets" / "camera2"
    other.mkdir(parents=True)
    pi = own.copy()
    shift = {("fm", 0): 3.1, ("fm", 1): 2.6, ("fm", 2): 3.4, ("lpips", 0): 0.2, ("lpips", 1): -0.3, ("lpips", 2): 0.4}
    pi["psnr"] = [15 + shift[(c, s)] + 0.1 * np.cos(k) for k, (c, s) in enumerate(zip(pi["combination"], pi["seed"],
                                                                                      strict=True))]
    pi.to_parquet(other / "per_image.parquet", index=False)
    (other / "notes.json").write_text(json.dumps({"data": "/data/camera2", "splits": ["test"], "images": 12}))
    md = write_report(exp, n_images=0, hparams=False).with_name("report.md").read_text()
    main, section = md.split("## Other dataset: camera2")
    assert "**NOT ENOUGH EVIDENCE** — Q1" in main
    assert "### The paper's questions on camera2" in section
    q1 = next(line for line in section.splitlines() if "Q1 (foundation-model term vs LPIPS term)" in line)
    assert q1.startswith("**YES** — Q1") and "`fm` vs `lpips` (3 vs 3 seeds)" in q1
    means = pi.groupby(["combination", "seed"])["psnr"].mean()
    a, b = means["fm"].to_numpy(), means["lpips"].to_numpy()
    p = 2 * stats.t.sf(abs((a.mean() - b.mean()) / np.sqrt(a.var(ddof=1) / 3 + b.var(ddof=1) / 3)), df=2)
    row = next(line for line in section.splitlines() if line.startswith("| fm | lpips | psnr |"))
    assert f"| {a.mean() - b.mean():.4g} |" in row and f"| {p:.4g} |" in row
    assert "Q2" in section  # asked too: not in this grid (no edge arm)
