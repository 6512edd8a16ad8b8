"""A grid with `prior:` end to end (issue 28): `ablate launch` trains each trial's autoencoder,
then its code prior, and draws samples; evaluation judges them; the report has the Synthesis
section; `ablate sample` adds samples and a re-run of `ablate evaluate` judges them too.
DRIVE at 32 px, the shipped `synthesis` grid made smaller (a trial's Ray start-up dominates).
One seed per arm, so the questions stop at "not enough seeds" here; test_synthesis_questions.py
(slow) answers both with 3 seeds per arm."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ablate.config import find_grid

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def synthesis_experiment(ray_local, drive32, tmp_path_factory):
    from ablate.pipeline import LaunchOptions, launch

    text = find_grid("synthesis").read_text()
    text = text.replace("steps: 40", "steps: 12").replace("steps: 60", "steps: 12").replace("samples: 32", "samples: 24")
    text = text.replace("checkpoint_every: 30", "checkpoint_every: 6")
    grid = tmp_path_factory.mktemp("grid") / "synthesis.yaml"
    grid.write_text(text)
    out = tmp_path_factory.mktemp("experiments") / "synthesis"
    return launch(LaunchOptions(grid=str(grid), data=str(drive32), out=str(out), segmenter="ridge"))


def test_each_trial_trains_a_prior_and_draws_its_samples(synthesis_experiment):
    from ablate.data.sample_store import read_samples

    exp = synthesis_experiment
    df = pd.read_parquet(exp / "results.parquet")
    assert sorted(df["combination"]) == ["base", "meijering_channel"] and (df["status"] == "done").all()
    assert (df["steps"] == 12).all() and (df["prior.steps"] == 12).all() and (df["prior.samples"] == 24).all()
    assert df["prior.loss"].map(np.isfinite).all() and df["prior.val_loss"].map(np.isfinite).all()
    assert (df["config.prior.seed"] == df["seed"]).all()  # the prior is seeded by its trial
    for trial in df["trial"]:
        s = read_samples(exp / "samples" / trial)
        assert s.images.shape == (24, 32, 32, 3) and len({im.tobytes() for im in s.images}) > 1
        sheet = Image.open(io.BytesIO((exp / "samples" / trial / "contact_sheet.png").read_bytes()))
        assert sheet.size == (4 * 32 + 3 * 2, 4 * 32 + 3 * 2)  # 16 samples, 4 across
        from tests.helpers.tensorboard import tensorboard_events

        tags = set(tensorboard_events(exp / "tensorboard" / trial).Tags()["scalars"])
        assert {"prior/loss", "prior/val_loss", "prior/lr"} <= tags


def test_evaluation_judges_the_samples_and_the_report_has_a_synthesis_section(synthesis_experiment):
    exp = synthesis_experiment
    table = pd.read_parquet(exp / "eval" / "samples.parquet")
    assert len(table) == 2 and (table["n_samples"] == 24).all() and (table["n_real"] == 20).all()
    for col in ("fid", "kid", "precision", "recall", "density", "coverage", "mem_share", "mem_share_px",
                "morph_w1.density", "morph_floor.density"):
        assert col in table.columns
    assert table["fid"].gt(0).all() and table["precision"].between(0, 1).all()
    assert table["morph_w1.density"].notna().all()
    pairs = pd.read_parquet(exp / "eval" / "sample_neighbours.parquet")
    assert set(pairs["space"]) == {"features", "pixels"} and (pairs.groupby(["trial", "space"]).size() == 8).all()
    md = (exp / "report" / "report.md").read_text()
    html = (exp / "report" / "index.html").read_text()
    assert "## Synthesis" in md and "Synthesis" in html and "data:image/png;base64" in html
    section = md[md.index("## Synthesis"):]
    # one seed per arm: Q2s is asked (its primaries declared) but cannot be answered; Q1s has no pair here
    assert "Q2s" in section and "NOT ENOUGH SEEDS" in section.upper()
    assert "Q1s" in section
    assert "fid@20" in section and "shown, never voted" in section  # 20 test images: under FID's floor


def test_ablate_sample_adds_samples_that_a_second_evaluation_judges(synthesis_experiment):
    from ablate.evaluate.run import EvalOptions, evaluate_experiment
    from ablate.prior.more import SampleOptions, sample_more

    exp = synthesis_experiment
    before = {p.name: p.read_bytes() for p in (exp / "samples").glob("*/chunk-00000.parquet")}
    done = sample_more(SampleOptions(exp=str(exp), n=40, trials=("base",)))
    # the trial drew one short chunk of 24; the top-up continues after it with a chunk of 16
    assert [d["drawn"] for d in done.values()] == [16] and [d["total"] for d in done.values()] == [40]
    assert {p.name: p.read_bytes() for p in (exp / "samples").glob("*/chunk-00000.parquet")} == before
    evaluate_experiment(EvalOptions(exp=str(exp), segmenter="ridge"))
    table = pd.read_parquet(exp / "eval" / "samples.parquet").set_index("combination")
    assert table.loc["base", "n_samples"] == 40 and table.loc["meijering_channel", "n_samples"] == 24
