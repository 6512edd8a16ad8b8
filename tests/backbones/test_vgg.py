"""The VGG16 trunk (ablate.backbones.vgg): torchvision's structure, found and loaded from the given path, the environment variable or the hub cache; missing or foreign files fail loudly."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torchvision
from torch import nn

from ablate.backbones.vgg import SLICES, VGG16_FILE, vgg16_taps, vgg16_weights_path
from ablate.io import sha256_file
from ablate.weights import WeightsMissing
from ablate.weights.table import TABLE, WeightsHashMismatch
from tests.weights_servers import refused_url

pytestmark = pytest.mark.usefixtures("one_thread", "own_ablate_cache")


# ----------------------------------------------------------------------------- VGG16


@pytest.fixture
def no_vgg_anywhere(tmp_path, monkeypatch):
    """An empty torch hub cache and no env var: nothing to find, and nowhere to fetch from (the URL is a
    local port that refuses connections: tests never reach download.pytorch.org)."""
    monkeypatch.delenv("ABLATE_VGG16_WEIGHTS", raising=False)
    monkeypatch.setenv("ABLATE_VGG16_URL", refused_url() + "/" + VGG16_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints" / VGG16_FILE


def assert_trunk_equals(trunk, saved):
    own = trunk.state_dict()
    n = 0
    for s, (a, b) in enumerate(SLICES):
        for i in range(a, b):
            for kind in ("weight", "bias"):
                key = f"features.{i}.{kind}"
                if key in saved:
                    assert torch.equal(own[f"slices.{s}.{i}.{kind}"], saved[key]), key
                    n += 1
    assert n == 26  # 13 convolutions, weight + bias each


def test_vgg_trunk_has_torchvision_vgg16_structure():
    # Our trunk must be torchvision's vgg16.features, sliced where LPIPS slices it.
    with torch.device("meta"):
        ref = torchvision.models.vgg16(weights=None).features
        ours = vgg16_taps(pretrained=False)
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}  # "<index>.weight"
    # ours: "slices.<s>.<index>.weight" -> "<index>.weight"
    own_shapes = {k.split(".", 2)[2]: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert own_shapes == ref_shapes
    assert len(ours.slices) == 5 and [len(s) for s in ours.slices] == [b - a for a, b in SLICES]
    # Each slice ends on a ReLU (the relu*_* taps), the next starts with the max-pool.
    assert all(isinstance(s[-1], nn.ReLU) for s in ours.slices)
    assert all(isinstance(s[0], nn.MaxPool2d) for s in list(ours.slices)[1:])


def test_vgg_explicit_path_loads_exactly_the_saved_weights(vgg_file):
    path, saved = vgg_file
    trunk = vgg16_taps(weights=str(path))
    assert trunk.pretrained and trunk.source == str(path)
    assert_trunk_equals(trunk, saved)
    assert not any(p.requires_grad for p in trunk.parameters())
    trunk.train()
    assert not trunk.training and not any(m.training for m in trunk.modules())


def test_vgg_env_var_and_hub_cache_are_searched(vgg_file, no_vgg_anywhere, monkeypatch):
    path, saved = vgg_file
    monkeypatch.setenv("ABLATE_VGG16_WEIGHTS", str(path))
    assert vgg16_weights_path() == path
    assert_trunk_equals(vgg16_taps(), saved)

    monkeypatch.delenv("ABLATE_VGG16_WEIGHTS")
    hub = no_vgg_anywhere
    hub.parent.mkdir(parents=True)
    hub.symlink_to(path)
    # Changed with the weights table (#15): a file in the hub cache is verified against torchvision's
    # sha256 prefix (397923af); the random stand-in is not torchvision's file, so it is refused ...
    with pytest.raises(WeightsHashMismatch, match="397923af"):
        vgg16_weights_path()
    # ... and found once the table carries the stand-in's own prefix.
    monkeypatch.setitem(TABLE, "vgg16", dataclasses.replace(TABLE["vgg16"], sha256_prefix=sha256_file(path)[:8]))
    assert vgg16_weights_path() == hub  # $TORCH_HOME/hub/checkpoints/vgg16-397923af.pth
    assert_trunk_equals(vgg16_taps(), saved)


@pytest.mark.bad_input
def test_vgg_a_given_but_wrong_path_does_not_fall_through(vgg_file, no_vgg_anywhere, monkeypatch, tmp_path):
    path, _ = vgg_file
    hub = no_vgg_anywhere
    hub.parent.mkdir(parents=True)
    hub.symlink_to(path)  # a valid file sits in the hub cache ...
    monkeypatch.setenv("ABLATE_VGG16_WEIGHTS", str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsMissing, match="ABLATE_VGG16_WEIGHTS"):  # ... but the env var wins, and is wrong
        vgg16_weights_path()
    with pytest.raises(WeightsMissing, match="weights` option"):
        vgg16_weights_path(tmp_path / "also_nope.pth")


@pytest.mark.bad_input
def test_vgg_missing_file_names_it_and_where_to_put_it(no_vgg_anywhere):
    with pytest.raises(WeightsMissing) as e:
        vgg16_taps()
    msg = str(e.value)
    assert VGG16_FILE in msg and str(no_vgg_anywhere) in msg and "ABLATE_VGG16_WEIGHTS" in msg


@pytest.mark.bad_input
def test_vgg_file_with_missing_or_foreign_keys_fails_loudly(vgg_file, tmp_path):
    _, saved = vgg_file
    broken = {k: v for k, v in saved.items() if k != "features.28.bias"}
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(RuntimeError, match="28.bias"):
        vgg16_taps(weights=tmp_path / "broken.pth")
    torch.save({"classifier.0.weight": torch.zeros(2, 2)}, tmp_path / "no_trunk.pth")
    with pytest.raises(WeightsMissing, match="no `features"):
        vgg16_taps(weights=tmp_path / "no_trunk.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a torch file")
    with pytest.raises(WeightsMissing, match="garbage.pth"):
        vgg16_taps(weights=tmp_path / "garbage.pth")


def test_vgg_random_trunk_only_when_asked(vgg_file):
    path, saved = vgg_file
    trunk = vgg16_taps(pretrained=False)
    assert not trunk.pretrained and trunk.source == "random init"
    assert not torch.equal(trunk.state_dict()["slices.0.0.weight"], saved["features.0.weight"])
    with pytest.raises(ValueError, match="pretrained=False"):
        vgg16_taps(pretrained=False, weights=str(path))
