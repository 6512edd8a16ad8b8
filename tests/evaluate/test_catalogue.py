"""Metric metadata lives beside the code that computes each metric (ablate.evaluate.*
declare `MetricInfo`s; ablate.evaluate.catalogue gathers them) and the report reads it from
there (issue 26: before, a table in report/metric_names.py, away from the metrics)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.evaluate import catalogue, fidelity, fov_fidelity, kid, morphology, vessel_border
from ablate.evaluate.catalogue import lookup
from ablate.metric_info import Better
from ablate.report import metric_names


def test_each_name_finds_its_declaration():
    assert lookup("psnr") is fov_fidelity.PSNR and lookup("psnr_whole") is fidelity.PSNR_WHOLE
    assert lookup("border_width_error") is vessel_border.BORDER_WIDTH_ERROR
    assert lookup("fd_retfound") is fidelity.FD and lookup("kid_retfound") is kid.KID_MODEL
    assert lookup("abs_delta_density") is morphology.ABS_DELTA
    # a family member must name something: a vessel feature for abs_delta_, a model for fd_/kid_
    for unknown in ("abs_delta_nonsense", "fd_", "kid_", "sharpness", "psnr@20"):
        assert lookup(unknown) is None, unknown


def test_the_report_reads_direction_unit_and_level_from_the_declarations():
    for name in catalogue.vocabulary():
        name = name.replace("<model>", "retfound")
        info = lookup(name)
        assert metric_names.direction(name) == info.better.value
        assert metric_names.unit(name) == (f" {info.unit}" if info.unit else "")
        assert metric_names.is_distribution(name) == info.per_set
    assert metric_names.direction("fid@20") == "lower" and metric_names.is_distribution("fid@20")
    assert metric_names.unit("val/psnr") == " dB" and metric_names.direction("val/loss/l1") == "lower"
    assert metric_names.direction("train/steps") is None


def test_higher_is_better_is_on_the_metric():
    assert fov_fidelity.PSNR.higher_is_better is True and fidelity.LPIPS.higher_is_better is False
    assert all(m.better in (Better.HIGHER, Better.LOWER) for m in catalogue.CATALOGUE)


def test_vocabulary_in_the_order_messages_list_it():
    v = catalogue.vocabulary()
    assert v[:8] == ["psnr", "ssim", "ms_ssim", "psnr_whole", "ssim_whole", "ms_ssim_whole", "lpips", "lpips[random-vgg]"]
    assert v[-4:] == ["fid", "kid", "fd_<model>", "kid_<model>"]
    assert [f"abs_delta_{f}" for f in morphology.FEATURES] == [m for m in v if m.startswith("abs_delta_")]


@pytest.mark.bad_input
def test_a_control_metric_cannot_be_declared_primary(tmp_path):
    from ablate.config import ConfigError, load_grid

    grid = (metric_names.__file__.rsplit("/ablate/", 1)[0] + "/search_spaces/losses.yaml")
    p = tmp_path / "g.yaml"
    p.write_text(Path(grid).read_text().split("questions:")[0] + "questions:\n  q1: {primary: ['lpips[random-vgg]']}\n")
    with pytest.raises(ConfigError, match=r"questions\.q1\.primary: lpips\[random-vgg\] may not vote \(LPIPS on a "
                                          r"randomly initialised VGG16") as info:
        load_grid(p)
    assert str(p) in str(info.value)
