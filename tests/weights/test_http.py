"""Fetching over HTTP (ablate.weights.http): a server that never answers fails in seconds naming the URL; a timeout that is not a number is one line naming the variable."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ablate.weights.cli import app as weights_app
from ablate.weights.table import TABLE

VGG = TABLE["vgg16"]


# ----------------------------------------------------------------------------- 2. a server that never answers


@pytest.fixture
def silent(caches, monkeypatch):
    from tests.weights_servers import SilentServer

    server = SilentServer()
    monkeypatch.setenv("ABLATE_WEIGHTS_READ_TIMEOUT_S", "1")  # the default is 60 s: 1 s keeps the test short
    yield server
    server.stop()


def weight_files(caches) -> list[str]:
    """Every file in the torch and Hugging Face caches except huggingface_hub's own metadata (refs/, locks)."""
    return sorted(str(p.relative_to(caches)) for root in ("torch", "hf") for p in (caches / root).rglob("*")
                  if (p.is_file() or p.is_symlink()) and "/.locks/" not in str(p) and "/refs/" not in str(p))


@pytest.mark.fault
@pytest.mark.parametrize("name", ["vgg16", "retfound"])
def test_fetch_from_a_server_that_never_answers_fails_in_seconds_naming_the_url(silent, caches, monkeypatch, name):
    import time

    import huggingface_hub  # noqa: F401  (imports are not what is timed: a first torch import takes seconds here)
    import torch.hub  # noqa: F401

    monkeypatch.setenv(VGG.url_env, f"{silent.url}/models/{VGG.file}")
    monkeypatch.setenv("HF_ENDPOINT", silent.url)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    start = time.monotonic()
    r = CliRunner().invoke(weights_app, ["fetch", name])
    took = time.monotonic() - start
    assert r.exit_code == 1, r.output
    assert took < 10, took  # one read timeout (1 s here), not huggingface_hub's minutes of retries, not for ever
    assert silent.connections >= 1  # it did reach the server, which accepted and said nothing
    url = f"{silent.url}/models/{VGG.file}" if name == "vgg16" else f"{silent.url}/{TABLE[name].origin}/resolve/main"
    assert url in r.output and "sent nothing for 1 s" in r.output and "ABLATE_WEIGHTS_READ_TIMEOUT_S" in r.output
    assert "Traceback" not in r.output
    assert weight_files(caches) == []  # no partial file left in any cache


@pytest.mark.bad_input
def test_a_timeout_that_is_not_a_number_is_one_line_naming_the_variable(caches, monkeypatch):
    monkeypatch.setenv("ABLATE_WEIGHTS_READ_TIMEOUT_S", "soon")
    r = CliRunner().invoke(weights_app, ["fetch", "vgg16"])
    assert r.exit_code == 1 and "$ABLATE_WEIGHTS_READ_TIMEOUT_S='soon' is not a number of seconds" in r.output
