"""Starting or joining Ray, shared by every program (the grid, `fm pretrain`,
`segmenter train`, `evaluate`)."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile


def start_ray(address: str | None) -> bool:
    """Connect to Ray, or start a local one; True when we started it (and so must stop it)."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=True)
        return False
    tmp = os.environ.get("ABLATE_RAY_TMP") or os.path.join(tempfile.gettempdir(), "ablate-ray")
    # The dashboard also serves the State API that Ray Train polls to clean up
    # placement groups; bound to loopback so nothing is exposed on the network.
    ray.init(num_cpus=os.cpu_count(), include_dashboard=True, dashboard_host="127.0.0.1", _temp_dir=tmp,
             runtime_env={"env_vars": {"RAY_TRAIN_V2_ENABLED": "1"}})
    return True


@contextlib.contextmanager
def ray_session(address: str | None):
    """`with ray_session(address):` joins or starts Ray and stops it again only if it started it."""
    import ray

    started = start_ray(address)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


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
