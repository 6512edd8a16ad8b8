"""Starting or joining Ray, shared by every program (the grid, `fm pretrain`,
`segmenter train`, `evaluate`)."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from ray._private.worker import RayContext


def start_ray(address: str | None, cpus: int | None = None, dashboard: bool = True) -> bool:
    """Connect to Ray, or start a local one; True when we started it (and so must stop it).

    Args:
        cpus: CPUs of a Ray started here (default: every core).
        dashboard: start the dashboard (Ray Train needs it; `prepare` does not, and it
            costs seconds of start-up)."""
    import ray

    from ablate.runtime import ray_output

    if ray.is_initialized():
        return False
    ray_output.quiet_driver()  # quiet mode: the driver's `ray` loggers to a file, before ray.init logs
    out = ray_output.init_kwargs()
    if address:
        env: dict[str, Any] = {"runtime_env": {"env_vars": out["env_vars"]}} if out["env_vars"] else {}
        ray.init(address=address, log_to_driver=out["log_to_driver"], **env)
        return False
    tmp = os.environ.get("ABLATE_RAY_TMP") or os.path.join(tempfile.gettempdir(), "ablate-ray")
    loopback_only()
    # The dashboard also serves the State API that Ray Train polls to clean up
    # placement groups; bound to loopback so nothing is exposed on the network.
    board: dict[str, Any] = {"include_dashboard": False}
    env_vars = {"RAY_TRAIN_V2_ENABLED": "1", **out["env_vars"]}
    if dashboard:
        port = free_loopback_port()
        board = {"include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": port}
        # Ray Train's PlacementGroupCleaner finds the State API by looking for "the" Ray on this
        # machine; with a second one running (another launch, a test beside this one) it fails
        # ("Found multiple active Ray instances") and the placement group of a trial Tune stopped
        # (ASHA) is never removed: the next trial waits for its CPUs until it times out. Named
        # here, for every process of this Ray (the trial actors, and the controllers and
        # cleaners they start inherit it).
        env_vars["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
    ctx = ray.init(num_cpus=cpus or os.cpu_count(), **board, _temp_dir=tmp,
                   _node_ip_address="127.0.0.1", log_to_driver=out["log_to_driver"],
                   runtime_env={"env_vars": env_vars})
    # cast: a local start returns a RayContext; ray.init is annotated with its base class.
    ray_output.note_session(cast("RayContext", ctx).address_info.get("session_dir"))
    return True


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS's pick), for a server about to bind it."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_SINGLE_NODE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_before: dict[str, str | None] = {}  # the user's own value, put back when our Ray stops


def loopback_only() -> None:
    """Make the Ray about to start here a single-machine one that listens on 127.0.0.1 only
    (issue 20, finding 9: GCS, raylet, workers and the dashboard agent listened on every
    interface). Ray 2.60 turns `_node_ip_address="127.0.0.1"` into the machine's routable
    address unless its single-machine mode is on; that mode is the switch Ray itself reads
    on macOS / Windows (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`): set in the environment for
    Ray's own processes, and on Ray's constant where `ray` is already imported (it is read
    at import). Measured: every listening socket of the Ray processes on 127.0.0.1
    (tests/runtime/test_cluster_local_ray.py). A cluster run (--address) never comes here."""
    import sys

    _before.setdefault(_SINGLE_NODE, os.environ.get(_SINGLE_NODE))
    os.environ[_SINGLE_NODE] = "0"
    constants: Any = sys.modules.get("ray._private.ray_constants")  # a module: its attributes are Ray's
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False


def cluster_mode_back() -> None:
    """Undo `loopback_only` after our local Ray stopped, so a later join in this process
    (tests, a notebook) resolves its node address as Ray normally does."""
    import sys

    if _SINGLE_NODE not in _before:
        return
    before = _before.pop(_SINGLE_NODE)
    if before is None:
        os.environ.pop(_SINGLE_NODE, None)
    else:
        os.environ[_SINGLE_NODE] = before
    constants: Any = sys.modules.get("ray._private.ray_constants")  # a module: its attributes are Ray's
    if constants is not None:  # what Ray computes at import from the same variable
        constants.ENABLE_RAY_CLUSTER = (before.lower() in ("1", "true") if before is not None
                                        else sys.platform not in ("darwin", "win32"))


@contextlib.contextmanager
def ray_session(address: str | None, **start):
    """`with ray_session(address) as started:` joins or starts Ray (`start`: start_ray's
    options) and stops it again only if it started it (`started`)."""
    import ray

    started = start_ray(address, **start)
    try:
        yield started
    finally:
        if started:
            ray.shutdown()
            cluster_mode_back()


def node_cpus() -> list[float]:
    """CPUs of each live node of the connected Ray cluster."""
    import ray

    return [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["Alive"]]


def local_resources() -> tuple[float, float]:
    """(CPUs, GPUs) a Ray started here would have (`start_ray` gives it every CPU; Ray
    counts the CUDA devices visible), known before Ray starts."""
    import torch

    return float(os.cpu_count() or 1), float(torch.cuda.device_count())


def node_gpus() -> list[float]:
    """GPUs of each live node (as Ray counts them: a node started with `num_gpus` declares them)."""
    import ray

    return [n["Resources"].get("GPU", 0.0) for n in ray.nodes() if n["Alive"]]


def total_cpus() -> float:
    import ray

    return ray.cluster_resources().get("CPU", 0.0)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (a scheduler, `kill`) gets Ctrl-C's treatment: Tune saves its state
    and stops the trials, so the experiment can be resumed."""
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
