"""`ablate weights` (ablate.weights.cli): `verify` fails on a named file that is missing or differs from the table."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ablate.weights.cli import app as weights_app
from ablate.weights.table import TABLE

VGG = TABLE["vgg16"]


# ----------------------------------------------------------------------------- 1. `ablate weights verify`


@pytest.mark.bad_input
def test_verify_fails_on_a_named_file_that_is_missing_or_differs_from_the_table(caches, monkeypatch):
    runner = CliRunner()
    gone = caches / "elsewhere" / VGG.file
    monkeypatch.setenv(VGG.env, str(gone))
    r = runner.invoke(weights_app, ["verify", "vgg16"])
    assert r.exit_code == 1, r.output
    assert f"verify failed: vgg16: ${VGG.env} names {gone}, which does not exist" in r.output
    r = runner.invoke(weights_app, ["verify"])  # all files: the named-and-missing one still fails it
    assert r.exit_code == 1 and f"${VGG.env} names {gone}" in r.output

    gone.parent.mkdir()
    gone.write_bytes(b"not the torchvision file")  # exists, but its sha256 lacks the table's prefix 397923af
    r = runner.invoke(weights_app, ["verify", "vgg16"])
    assert r.exit_code == 1, r.output
    assert f"verify failed: vgg16: {gone} (named by ${VGG.env}) differs from the table" in r.output
    assert "397923af" in r.output
    assert gone.read_bytes() == b"not the torchvision file"  # the user's file: reported, never touched


@pytest.mark.bad_input
def test_verify_fails_on_a_file_asked_for_by_name_that_is_absent_but_not_on_files_never_fetched(caches):
    runner = CliRunner()
    r = runner.invoke(weights_app, ["verify", "vgg16"])  # asked for: absent is not verified
    assert r.exit_code == 1 and "verify failed: vgg16: not present" in r.output, r.output
    r = runner.invoke(weights_app, ["verify", "lpips_vgg_heads"])
    assert r.exit_code == 0, r.output
