"""Verification records (ablate.weights.record): a garbage record is one line naming it, and is kept."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ablate.weights import WeightsMissing
from ablate.weights import table as weights
from ablate.weights.cli import app as weights_app
from ablate.weights.table import TABLE
from tests.helpers.text import one_line

HEADS = TABLE["lpips_vgg_heads"]  # ships in the lpips wheel: always present, so its record is read


# ----------------------------------------------------------------------------- 3. verification records

GARBAGE_RECORDS = {
    "binary": b"\x00\xff\xfe\x80 not a record",
    "list": b"[1, 2, 3]",
    "deep": b"[" * 100_000,  # json recurses on nesting
    "wrong_type": json.dumps({"sha256": 5, "path": "/x", "size": 1, "mtime_ns": 1}).encode(),
    "missing_key": json.dumps({"sha256": "ab" * 32}).encode(),
    "not_hex": json.dumps({"sha256": "zz", "path": "/x", "size": 1, "mtime_ns": 1}).encode(),
}


@pytest.mark.bad_input
@pytest.mark.parametrize("kind", [*GARBAGE_RECORDS, "folder"])
def test_garbage_verification_record_is_one_line_naming_it_and_is_kept(caches, kind):
    record = weights.record_path(HEADS.name)
    record.parent.mkdir(parents=True)
    if kind == "folder":
        record.mkdir()
    else:
        record.write_bytes(GARBAGE_RECORDS[kind])
    with pytest.raises(WeightsMissing) as e:  # the file is not used: the record may have been its pin
        weights.locate(HEADS.name)
    msg = one_line(str(e.value))
    assert msg.startswith(f"{record}: the verification record of {HEADS.name}") and "unreadable" in msg
    assert "Delete that record" in msg and f"ablate weights verify {HEADS.name}" in msg

    runner = CliRunner()
    listed = runner.invoke(weights_app, [])  # the listing says so, and does not fail
    assert listed.exit_code == 0 and "UNREADABLE" in listed.output, listed.output
    checked = runner.invoke(weights_app, ["verify", HEADS.name])
    assert checked.exit_code == 1 and f"verify failed: {HEADS.name}: its verification record is unreadable" \
        in checked.output, checked.output
    assert record.is_dir() if kind == "folder" else record.read_bytes() == GARBAGE_RECORDS[kind]  # never rewritten

    if kind != "folder":  # the fix the message gives works
        record.unlink()
        assert runner.invoke(weights_app, ["verify", HEADS.name]).exit_code == 0
        assert weights.read_record(HEADS.name)["sha256"] == HEADS.sha256
