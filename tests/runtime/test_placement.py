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
