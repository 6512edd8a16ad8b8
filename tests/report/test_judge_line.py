"""The judge line beside every vessel verdict (ablate.report.judge_line, issue 31): what it says,
where it stands, and the rule that cautions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ablate.report.judge_line import MIN_RIDGE_AGREEMENT, judge_line, record_caution
from ablate.report.publish import write_report
from tests.helpers.experiments import EDGE, make_exp
from tests.report.test_synthesis_section import SEEDS, add_samples, declare

# As evaluation records them (eval/notes.json `judge`): the q2-drive U-Net on DRIVE's originals,
# and the same U-Net judging 256 px images (BENCHMARKS.md, "The vessel judge on the images it judges").
HEALTHY = {"segmenter": "unet:u", "image_size": 32, "images": 12, "masks": 12, "dice": 0.765, "auc": 0.96,
           "dice_mean_per_image": 0.76, "ridge_dice": 0.663, "ridge_agreement": 0.738, "ridge_agreement_min": 0.678}
LOW = {**HEALTHY, "dice": 0.502, "auc": 0.887, "ridge_dice": 0.645, "ridge_agreement": 0.67,
       "ridge_agreement_min": 0.597}
HEALTHY_LINE = ("Vessel judge on these originals: unet:u — Dice 0.765 / AUC 0.960 vs 12 manual masks (ridge filter: "
                "Dice 0.663); agrees with the ridge map at Dice 0.738 (mean of 12 images, lowest 0.678).")


def test_the_caution_fires_exactly_below_the_rules_thresholds():
    """With manual masks: below the ridge filter's Dice on the same masks, not at it; the agreement
    then does not decide. Without masks: agreement below 0.70, not at it."""
    at = {**HEALTHY, "dice": 0.663}
    assert record_caution(at) == ""
    below = {**at, "dice": math.nextafter(0.663, 0)}
    assert record_caution(below) == ("at 32 px it scores Dice 0.663 against the 12 manual masks, below the untrained "
                                     "ridge filter's 0.663 on the same masks")
    assert record_caution({**HEALTHY, "ridge_agreement": 0.2}) == ""  # masks decide where there are some
    no_masks = {k: v for k, v in HEALTHY.items() if k not in ("dice", "auc", "dice_mean_per_image", "ridge_dice")}
    no_masks["masks"] = 0
    assert record_caution({**no_masks, "ridge_agreement": MIN_RIDGE_AGREEMENT}) == ""
    low = record_caution({**no_masks, "ridge_agreement": math.nextafter(MIN_RIDGE_AGREEMENT, 0)})
    assert "no manual masks" in low and "below 0.70" in low
    assert judge_line({"judge": [no_masks]}).text.startswith("Vessel judge on these originals: unet:u — no manual "
                                                             "masks here; agrees with the ridge map at Dice 0.738")
    ridge = {"segmenter": "ridge:meijering+otsu", "image_size": 32, "images": 12, "masks": 0,
             "ridge_agreement_skipped": "the judge is ridge:meijering+otsu, a ridge filter itself"}
    assert not judge_line({"judge": [ridge]}).caution
    assert "not measured: the judge is ridge:meijering+otsu, a ridge filter itself" in judge_line({"judge": [ridge]}).text


def _after(lines: list[str], start: str) -> list[str]:
    """The first non-blank line after each line that starts with `start`."""
    out = []
    for k, line in enumerate(lines):
        if line.startswith(start):
            out.append(next(x for x in lines[k + 1:] if x.strip()))
    return out


def q2_experiment(root: Path, own: dict | None, other: dict | None) -> Path:
    """base and edge, 3 seeds, maps from a U-Net; Q2s declared on a vessel primary; eval/notes.json
    with the judge record `own` (None: written before it existed) and another dataset `camera2`
    whose notes carry `other`."""
    exp = make_exp(root, {"base": {}, "edge": EDGE}, seeds=SEEDS, segmenter="unet:u")
    add_samples(exp)
    declare(exp, {"q2s": {"primary": ["morph_w1.density"]}})
    notes = json.loads((exp / "eval" / "notes.json").read_text())
    if own is not None:
        (exp / "eval" / "notes.json").write_text(json.dumps({**notes, "judge": [own]}))
    if other is not None:
        folder = exp / "eval" / "datasets" / "camera2"
        folder.mkdir(parents=True)
        pd.read_parquet(exp / "eval" / "per_image.parquet").to_parquet(folder / "per_image.parquet", index=False)
        (folder / "notes.json").write_text(json.dumps({"data": "/data/camera2", "splits": ["test"], "images": 12,
                                                       "judge": [other]}))
    return exp


def test_the_judge_line_stands_beside_every_vessel_verdict_and_its_caution_is_read_first(tmp_path):
    """The grid's Q2 and Q2s get the grid's judge line (healthy: no caution); camera2's Q2 gets
    camera2's (low: CAUTION), and only it is in "Read before the numbers". Q1 (not a vessel
    verdict) gets none."""
    exp = q2_experiment(tmp_path / "e", HEALTHY, LOW)
    html_path = write_report(exp, n_images=0, hparams=False)
    md = html_path.with_name("report.md").read_text()
    lines = md.splitlines()
    q2 = _after(lines, "**")
    verdicts = [line for line in lines if line.startswith("**")]
    assert [v.split(" — ")[1][:3] for v in verdicts] == ["Q1:", "Q2 ", "Q1s", "Q2s", "Q1:", "Q2 "]  # the order
    assert q2[1] == HEALTHY_LINE and q2[3] == HEALTHY_LINE  # Q2, Q2s on the grid's data
    assert q2[5].startswith("Vessel judge on these originals: unet:u — Dice 0.502 / AUC 0.887 vs 12 manual masks "
                            "(ridge filter: Dice 0.645)") and " CAUTION: unet:u at 32 px it scores Dice 0.502 against " \
        "the 12 manual masks, below the untrained ridge filter's 0.645 on the same masks: it may mark" in q2[5]
    assert md.count("Vessel judge on these originals") == 3  # Q1, Q1s, camera2's Q1: none
    read_first = md.split("## Read before the numbers")[1].split("## The paper's two questions")[0]
    assert read_first.count("VESSEL JUDGE UNRELIABLE") == 1
    assert "VESSEL JUDGE UNRELIABLE on other dataset camera2: unet:u at 32 px it scores Dice 0.502" in read_first
    html = html_path.read_text()
    assert html.count('<p class="judge">') == 2 and html.count('<p class="judge caution">') == 1
    assert html.index('<p class="judge caution">') > html.index("Other dataset: camera2")

    healthy = q2_experiment(tmp_path / "h", HEALTHY, HEALTHY)
    md = write_report(healthy, n_images=0, hparams=False).with_name("report.md").read_text()
    assert "VESSEL JUDGE UNRELIABLE" not in md and "CAUTION" not in md and md.count(HEALTHY_LINE) == 3


def test_a_report_of_an_experiment_evaluated_before_the_record_renders_and_says_not_recorded(tmp_path):
    exp = q2_experiment(tmp_path / "e", None, None)
    md = write_report(exp, n_images=0, hparams=False).with_name("report.md").read_text()
    after = _after(md.splitlines(), "**")
    not_recorded = ("Vessel judge on these originals: not recorded (evaluated before ablate measured the judge on "
                    "the originals; `ablate evaluate` again records it).")
    assert after[1] == not_recorded and after[3] == not_recorded
    assert "notes.json" not in md.split("## The paper's two questions")[0]  # the old file read without a warning
    assert "VESSEL JUDGE UNRELIABLE" not in md
