"""GPUs in the placement check, counted per node as CPUs are: fractional GPUs pack
trials on one device, a grid that does not fit is refused naming the shortfall, and
the CPUs kept for Ray Data's decoding grow with the GPU trials fed. No GPU needed:
Ray lets a node declare `num_gpus` without a device."""

from __future__ import annotations

import pytest

from ablate.runtime import data_cpus, plan_placement
from ablate.specs import ConfigError


def test_four_quarter_gpu_trials_pack_on_one_gpu():
    p = plan_placement(8, workers=1, cpus_per_worker=None, gpus_per_worker=0.25, concurrent=None,
                       node_cpus=[8], node_gpus=[1])
    assert p.concurrent == 4 and p.gpus_per_worker == 0.25
    assert p.data_cpus == 2.0  # 0.5 per GPU trial fed, more than the one whole CPU
    assert p.concurrent * (p.cpus_per_worker + p.driver_cpus) <= 8 - p.data_cpus
    asked = plan_placement(8, workers=1, cpus_per_worker=None, gpus_per_worker=0.25, concurrent=4,
                           node_cpus=[8], node_gpus=[1])
    assert asked.concurrent == 4


@pytest.mark.bad_input
def test_gpu_grid_that_does_not_fit_is_refused_naming_the_shortfall():
    with pytest.raises(ConfigError, match=r"5 concurrent trial\(s\) x 1 worker\(s\) x 0.25 GPU need 5 worker slots "
                                          r"\(1.25 GPUs\).*GPUs per node: 1\) hold 4: short by 1 slot\(s\) \(0.25 GPUs\)"):
        plan_placement(16, workers=1, cpus_per_worker=None, gpus_per_worker=0.25, concurrent=5,
                       node_cpus=[16], node_gpus=[1])
    # Per node, as for CPUs: two nodes of one GPU hold no worker of 2 GPUs, though they have 2 in all.
    with pytest.raises(ConfigError, match="no node has that many GPUs"):
        plan_placement(16, workers=1, cpus_per_worker=None, gpus_per_worker=2, concurrent=1,
                       node_cpus=[8, 8], node_gpus=[1, 1])
    # 0.75 GPU workers: one per device, so two 1-GPU nodes hold 2 trials, not 2 / 0.75.
    with pytest.raises(ConfigError, match="hold 2: short by 1"):
        plan_placement(16, workers=1, cpus_per_worker=None, gpus_per_worker=0.75, concurrent=3,
                       node_cpus=[8, 8], node_gpus=[1, 1])
    with pytest.raises(ConfigError, match="no Ray node has a GPU"):
        plan_placement(8, workers=1, cpus_per_worker=None, gpus_per_worker=1, concurrent=None,
                       node_cpus=[8], node_gpus=[0])
    with pytest.raises(ConfigError, match="whole GPUs only"):
        plan_placement(8, workers=1, cpus_per_worker=None, gpus_per_worker=1.5, concurrent=None,
                       node_cpus=[8], node_gpus=[2])


def test_gpu_trials_are_limited_by_the_cpus_kept_for_decoding():
    # 8 quarter-GPU trials fit on two GPUs, but 4 CPUs keep 4 x 0.5 = 2 for Ray Data at 4 trials.
    p = plan_placement(4, workers=1, cpus_per_worker=0.45, gpus_per_worker=0.25, concurrent=None,
                       node_cpus=[4], node_gpus=[2])
    assert p.concurrent * (0.45 + p.driver_cpus) <= 4 - data_cpus(p.concurrent, 0.25)
    assert p.concurrent == 4
    with pytest.raises(ConfigError, match=r"3 stay free for Ray Data's decoding"):
        plan_placement(4, workers=1, cpus_per_worker=0.45, gpus_per_worker=0.25, concurrent=6,
                       node_cpus=[4], node_gpus=[2])
    assert data_cpus(1, 0.0) == data_cpus(8, 0.0) == 1.0  # CPU trials: the one CPU, as before


@pytest.mark.bad_input
def test_local_launch_refuses_before_ray_starts(monkeypatch):
    from ablate.runtime import cluster
    from ablate.train.launch import LaunchOptions, local_placement

    monkeypatch.setattr(cluster, "local_resources", lambda: (8.0, 0.0))
    with pytest.raises(ConfigError, match="no Ray node has a GPU"):
        local_placement(LaunchOptions(grid="losses", gpus_per_worker=0.25))
    monkeypatch.setattr(cluster, "local_resources", lambda: (8.0, 1.0))
    assert local_placement(LaunchOptions(grid="losses", gpus_per_worker=0.25)).concurrent == 4


SIMULATED = r'''
import os, sys, ray
from ablate.runtime import node_cpus, node_gpus, plan_placement, total_cpus

ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=sys.argv[1])
try:
    assert node_gpus() == [1.0], node_gpus()
    p = plan_placement(total_cpus(), 1, None, 0.25, None, node_cpus=node_cpus(), node_gpus=node_gpus())
    assert p.concurrent == 4, p

    @ray.remote
    class Worker:
        def share(self):
            return ray.get_runtime_context().get_assigned_resources().get("GPU")

    workers = [Worker.options(num_cpus=p.cpus_per_worker, num_gpus=p.gpus_per_worker).remote() for _ in range(4)]
    shares = ray.get([w.share.remote() for w in workers], timeout=120)  # all four placed at once
    fifth = Worker.options(num_cpus=0.01, num_gpus=0.25).remote()
    ready, _ = ray.wait([fifth.share.remote()], timeout=3)  # the GPU is full: it waits
    print("OK", p.concurrent, p.cpus_per_worker, shares, len(ready))
finally:
    ray.shutdown()
'''


def test_simulated_one_gpu_node_holds_four_quarter_gpu_trials(tmp_path):
    """Ray with `num_gpus=1` declared and no device: the plan packs 4 x 0.25 GPU, Ray
    places all four at once and holds a fifth back (own Ray, in a subprocess)."""
    import os
    import subprocess
    import sys

    tmp = os.path.join("/tmp", f"ablate-gpu-sim-{os.getpid()}")
    out = subprocess.run([sys.executable, "-c", SIMULATED, tmp], capture_output=True, text=True, timeout=300, check=False,
                         env={k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"})
    assert out.returncode == 0, out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("OK 4 ") and last.endswith("[0.25, 0.25, 0.25, 0.25] 0"), last


@pytest.mark.bad_input
@pytest.mark.usefixtures("no_ray_start")
def test_zero_cpu_workers_and_zero_concurrency_refused_by_placement():
    """Finding F2 (issue 20): fm pretrain and segmenter train plan with plan_placement too: 0 CPUs per worker lifted
    the concurrency cap to 99, and a concurrency of 0 reads as unlimited to Tune."""
    from ablate.runtime import plan_placement

    with pytest.raises(ConfigError, match=r"--cpus-per-worker must be > 0 \(at least 0.01\), got 0"):
        plan_placement(2, workers=1, cpus_per_worker=0, gpus_per_worker=0, concurrent=None)
    with pytest.raises(ConfigError, match="--concurrent must be >= 1, got 0"):
        plan_placement(2, workers=1, cpus_per_worker=None, gpus_per_worker=0, concurrent=0)
