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
