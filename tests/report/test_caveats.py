"""The report's caveats (ablate.report.caveats): demo data and stand-in weights are flagged."""

from __future__ import annotations

import json

from ablate.evaluate.catalogue import lookup
from ablate.report.collect import load_experiment
from tests.helpers.experiments import LPIPS, make_exp


def test_demo_data_and_stand_ins_are_flagged(tmp_path, monkeypatch):
    from ablate.report.collect import is_demo_data, stand_in_notes, term_tag
    from ablate.report.render import report_warnings

    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "cache"))
    demo = tmp_path / "cache" / "demo" / "prepared-256"
    assert is_demo_data(str(demo)) and not is_demo_data(str(tmp_path / "drive32")) and not is_demo_data(None)
    row = {"config.loss.lpips.weight": 0.5, "config.loss.lpips.options.pretrained": False,
           "config.loss.foundation.weight": 0.5, "config.loss.foundation.options.model": "retfound",
           "config.loss.foundation.options.pretrained": False}
    assert term_tag(row, "lpips") == "lpips[random-vgg]" and term_tag(row, "foundation") == "foundation[retfound|random]"
    notes = stand_in_notes(row)
    assert any("RANDOM VGG16" in n for n in notes) and any("RANDOM retfound ViT" in n for n in notes)
    exp = make_exp(tmp_path / "e", {"base": {}, "lpips": LPIPS})
    g = json.loads((exp / "grid.json").read_text())
    g["data"] = str(demo)
    (exp / "grid.json").write_text(json.dumps(g))
    w = " ".join(report_warnings(load_experiment(exp)))
    assert "DEMO DATA" in w and "RANDOM VGG16" in w and "ridge-filter fallback" in w and "LPIPS not computed" in w


def test_a_voting_metric_not_computable_for_some_images_is_noted_with_its_reason(tmp_path):
    """border_width_error is NaN where the original has no dark border to measure: the same images
    in every trial. The report said nothing, and showed "—" where no image was left (issue 27)."""
    from ablate.report.caveats import statistical_warnings

    def value(c, s, i):
        v = {"border_width_error": float("nan") if i < 3 else 0.5}
        if c == "lpips" and s == 1:
            v["delta_average_width"] = float("nan")  # one trial's maps only: varies by trial
        return v

    e = load_experiment(make_exp(tmp_path / "e", {"base": {}, "lpips": LPIPS}, seeds=(0, 1), value=value))
    notes = [w for w in statistical_warnings(e, "declared") if "not computable" in w]
    assert sorted(notes, reverse=True) == [
        ("border_width_error: not computable for 3 of 12 test images, in every trial (NaN where the original's vessel "
         "map has no pixel inside the FOV less its rim band, or the original's mean profile across its vessel borders "
         "has no dark border that falls into the vessels); a trial's mean is over its other images."),
        ("abs_delta_average_width: not computable for 12 of 48 (trial, image) values, in 1 of 4 trials (NaN where "
         "neither vessel map has what the feature measures: a vessel, a segment of 11 px for the tortuosities, an "
         "image of 32 px for the fractal dimension); a trial's mean is over its other images; 1 trial(s) with none "
         "show —."),
    ]
    everywhere = load_experiment(make_exp(tmp_path / "f", {"base": {}}, value=lambda c, s, i: {
        "border_width_error": float("nan")}))
    assert [w for w in statistical_warnings(everywhere, "declared") if "not computable" in w] == [
        (f"border_width_error: not computable for 12 of 12 test images, in every trial (NaN where "
         f"{lookup('border_width_error').nan_when}); no trial has a value: it shows — and does not vote.")]
