"""Placement on a simulated one-GPU Ray node (ablate.runtime.placement; its own file: it starts Ray, in a subprocess)."""

from __future__ import annotations

import pytest

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


@pytest.mark.ray
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
