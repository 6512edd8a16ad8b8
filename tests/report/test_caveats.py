"""The report's caveats (ablate.report.caveats): demo data and stand-in weights are flagged."""

from __future__ import annotations

import json

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
