"""The LPIPS heads (ablate.backbones.lpips_heads): the lpips wheel's file; bad files named; without the lpips package."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util

import pytest
import torch

from ablate.backbones.lpips_heads import HEADS_MD5, default_heads_path, load_lpips_heads
from ablate.io import sha256_file
from ablate.weights import WeightsMissing
from ablate.weights.table import TABLE, WeightsHashMismatch

pytestmark = pytest.mark.usefixtures("one_thread", "own_ablate_cache")


# ----------------------------------------------------------------------------- LPIPS heads


def test_lpips_heads_are_the_wheel_file():
    path = default_heads_path()
    assert path.as_posix().endswith("lpips/weights/v0.1/vgg.pth")
    assert hashlib.md5(path.read_bytes()).hexdigest() == HEADS_MD5
    assert sha256_file(path) == TABLE["lpips_vgg_heads"].sha256
    ref = torch.load(path, map_location="cpu", weights_only=True)
    heads = load_lpips_heads()
    assert [tuple(h.shape) for h in heads] == [(1, c, 1, 1) for c in (64, 128, 256, 512, 512)]
    for i, h in enumerate(heads):
        assert torch.equal(h, ref[f"lin{i}.model.1.weight"])
    assert all((h >= 0).all() for h in heads)  # LPIPS heads are clamped non-negative when trained


@pytest.mark.bad_input
def test_lpips_heads_bad_files_fail_naming_them(tmp_path, monkeypatch):
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"\x00not a pickle")
    with pytest.raises(WeightsMissing, match="garbage.pth"):
        load_lpips_heads(bad)
    sd = {f"lin{i}.model.1.weight": torch.ones(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))}
    sd["lin2.model.1.weight"] = torch.ones(1, 128, 1, 1)
    torch.save(sd, tmp_path / "wrong_shape.pth")
    with pytest.raises(WeightsMissing, match="lin2.model.1.weight"):
        load_lpips_heads(tmp_path / "wrong_shape.pth")
    with pytest.raises(WeightsMissing, match="missing"):
        load_lpips_heads(tmp_path / "missing.pth")
    # The wheel's file is pinned by the weights table's sha256 (was MD5 before #15): another is refused.
    monkeypatch.setitem(TABLE, "lpips_vgg_heads", dataclasses.replace(TABLE["lpips_vgg_heads"], sha256="0" * 64))
    with pytest.raises(WeightsHashMismatch, match="sha256"):
        load_lpips_heads()


def test_lpips_heads_without_the_lpips_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lpips" else real(name, *a))
    with pytest.raises(WeightsMissing, match="lpips/weights/v0.1/vgg.pth"):
        load_lpips_heads()
