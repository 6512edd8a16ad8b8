"""Shared fixtures. Real data comes from the DRIVE copy beside the project
(../shared/data/drive, or $ABLATE_TEST_DRIVE); it is read in place, never copied into the repo."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import RAY_STARTS, TINY_GRID
from tests.s3_server import s3  # noqa: F401  (the loopback S3 server fixture, for every module)

# $ABLATE_TEST_DRIVE points the tests at another DRIVE copy (a cluster node, a CI runner
# whose shared data sits elsewhere); default ../shared/data/drive beside the checkout.
DRIVE = Path(os.environ.get("ABLATE_TEST_DRIVE") or Path(__file__).resolve().parents[2] / "shared" / "data" / "drive")

# Every file ablate caches (demo data, weights it makes, verification records) goes to a
# folder of this test session, never the user's ~/.cache/ablate. Set before any test module
# imports ablate: the default weight paths are read from it at import.
os.environ["ABLATE_CACHE"] = tempfile.mkdtemp(prefix="ablate-test-cache-")
atexit.register(shutil.rmtree, os.environ["ABLATE_CACHE"], True)


@pytest.fixture(scope="session", autouse=True)
def ablate_log_lines():
    """The library's log lines (ablate.logs) on stdout / stderr as the `ablate` command shows
    them, for tests that call library functions directly and read what they said with capsys."""
    from ablate.logs import setup_logging

    setup_logging()


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny tensors: once scipy/skimage have run, torch's OpenMP threads
    contend with theirs on a 2-core machine and small convolutions get 10-100x slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def no_ray_start(monkeypatch):
    """Every ray.init of the test is recorded in tests.helpers.RAY_STARTS and refused: a check
    "before Ray starts" must not reach it."""
    import ray

    RAY_STARTS.clear()

    def refuse(*args, **kwargs):
        RAY_STARTS.append((args, kwargs))
        raise AssertionError("ray.init called: the check should have refused before Ray starts")

    monkeypatch.setattr(ray, "init", refuse)


@pytest.fixture(scope="session")
def drive_dir() -> Path:
    if not (DRIVE / "images").is_dir():
        pytest.fail(f"DRIVE data not found at {DRIVE}; the tests need ../shared/data/drive beside the project, or $ABLATE_TEST_DRIVE naming a copy")
    return DRIVE


@pytest.fixture(scope="session")
def drive32(tmp_path_factory, drive_dir) -> Path:
    """DRIVE prepared at 32 px once per test session."""
    from ablate.data.shards import prepare

    out = tmp_path_factory.mktemp("drive32")
    prepare(drive_dir, out, size=32)
    return out


@pytest.fixture(scope="session")
def drive64(tmp_path_factory, drive_dir) -> Path:
    """DRIVE prepared at 64 px once per test session (the segmenter's patches need more than 32)."""
    from ablate.data.shards import prepare

    out = tmp_path_factory.mktemp("drive64")
    prepare(drive_dir, out, size=64)
    return out


@pytest.fixture
def data(tmp_path, drive32) -> Path:
    """A private copy of DRIVE at 32 px, free to be damaged."""
    d = tmp_path / "data"
    shutil.copytree(drive32, d)
    return d


@pytest.fixture(scope="session")
def vgg_file(tmp_path_factory) -> tuple[Path, dict]:
    """A STAND-IN for torchvision's vgg16-397923af.pth (the real file is not on this machine):
    random trunk weights (features.*) and a one-tensor classifier stub, so the file looks like
    torchvision's without its 500 MB classifier. Only the trunk matters to LPIPS. Returns the
    file and the state dict written to it."""
    import torch
    import torchvision

    from ablate.backbones.vgg import VGG16_FILE

    g = torch.Generator().manual_seed(0)
    feats = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    sd = {}
    for k, v in feats.state_dict().items():
        # kaiming-like scale keeps activations alive through 13 layers; non-zero biases
        # so a loader that skipped biases would be caught.
        std = (2.0 / v[0].numel()) ** 0.5 if v.dim() == 4 else 0.05
        sd[f"features.{k}"] = torch.randn(v.shape, generator=g) * std
    sd["classifier.0.weight"] = torch.randn(4, 8, generator=g)
    path = tmp_path_factory.mktemp("vgg") / VGG16_FILE
    torch.save(sd, path)
    return path, sd


@pytest.fixture
def own_ablate_cache(tmp_path, monkeypatch):
    """Verification records go to $ABLATE_CACHE/weights/.verified: a temporary one for the
    test, never the session's or the user's."""
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "ablate_cache"))


@pytest.fixture
def caches(tmp_path, monkeypatch) -> Path:
    """Every cache in a temporary folder (ablate's, torch hub's, Hugging Face's); no override
    of a pretrained file's path or URL set; no Hugging Face token on this machine."""
    import huggingface_hub.constants as hf_constants

    from ablate.weights.table import TABLE

    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "ablate"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for var in ("HF_HUB_CACHE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE",
                *(e.env for e in TABLE.values() if e.env), *(e.url_env for e in TABLE.values() if e.url_env)):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))  # no `hf auth login`
    # huggingface_hub fetches an "agent harnesses" list from its import-time endpoint for its User-Agent
    # unless telemetry is off: off here, so no request leaves 127.0.0.1.
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_TELEMETRY", True)
    return tmp_path


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    """One local Ray instance for the whole session (start-up costs seconds)."""
    import ray

    tmp = os.path.join("/tmp", f"ablate-test-ray-{os.getpid()}")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tmp, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_grid(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("grid") / "e2e.yaml"
    p.write_text(TINY_GRID)
    return p


@pytest.fixture(scope="session")
def tiny_experiment(ray_local, drive32, tiny_grid, tmp_path_factory) -> Path:
    """A real two-trial experiment on DRIVE at 32 px, trained and evaluated once per
    session (a trial costs tens of seconds of Ray start-up); tests only read it."""
    from ablate.pipeline import LaunchOptions, launch

    out = tmp_path_factory.mktemp("experiments") / "e2e"
    return launch(LaunchOptions(grid=str(tiny_grid), data=str(drive32), out=str(out), segmenter="ridge"))


# Fixtures that start Ray (a test using one, directly or through another fixture, must carry
# the `ray` marker). A new fixture that starts Ray belongs here.
RAY_FIXTURES = frozenset({"ray_local", "tiny_experiment", "three_nodes"})


def pytest_collection_modifyitems(items):
    """Every test that starts Ray through a fixture carries the `ray` marker (`-m "not ray"`
    must leave no Ray start behind); checked here, so a missing marker stops the run at
    collection naming the test. Then tests that start Ray go first (a stable sort keeps file
    order within each group): with two xdist workers taking a file at a time, the long Ray
    files spread over both instead of one of them ending the run alone."""
    unmarked = [f"{item.nodeid} (uses {', '.join(sorted(RAY_FIXTURES & set(item.fixturenames)))})"
                for item in items
                if RAY_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("ray") is None]
    if unmarked:
        raise pytest.UsageError("tests that start Ray without @pytest.mark.ray (add the marker):\n  "
                                + "\n  ".join(unmarked))
    items.sort(key=lambda item: item.get_closest_marker("ray") is None)
    if os.environ.get("ABLATE_SLOW_TESTS") != "1":  # skipped, so the run's summary counts them
        skip = pytest.mark.skip(reason="slow (minutes on 2 cores): set ABLATE_SLOW_TESTS=1 to run it")
        for item in items:
            if item.get_closest_marker("slow") is not None:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def ray_start_needs_the_marker(request, monkeypatch):
    """A test without the `ray` marker that calls ray.init in this process fails, naming itself
    (a start through code that ray_local / tiny_experiment do not cover: prepare, launch,
    evaluate). Only where Ray is already imported (test modules that import ablate have it):
    importing Ray here would cost every fast test a second. Ray started in a subprocess is not
    seen here; such tests carry the marker by hand."""
    ray = sys.modules.get("ray")
    if ray is None or request.node.get_closest_marker("ray") is not None:
        return

    def refuse(*args, **kwargs):
        pytest.fail(f"{request.node.nodeid} starts Ray without @pytest.mark.ray: add the marker")

    monkeypatch.setattr(ray, "init", refuse)
