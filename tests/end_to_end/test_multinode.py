"""Scale-out, simulated: a head and two worker nodes on this machine.

`ray.cluster_utils.Cluster` starts three raylets, each with its own logical
CPUs (2 each), sharing this machine's cores. `ablate launch --address` joins it
as it would a real cluster. With the default placement a Train worker takes
1.95 CPUs, so no node holds two: a trial with two workers must span two nodes,
and the third node keeps the whole CPU Ray Data's tasks need.

The first tests check the placement rule itself (no Ray needed).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from unittest import mock

import pandas as pd
import pytest

from ablate.runtime import plan_placement, ray_data_can_starve
from ablate.specs import ConfigError
from tests.helpers.launch_processes import ABLATE_COMMAND
from tests.helpers.network import free_port


def test_default_worker_fits_on_one_node():
    # Sized from the cluster total alone, a worker would ask for 2.45 CPUs: no 2-CPU node has them.
    assert plan_placement(6, workers=2, cpus_per_worker=None, gpus_per_worker=0, concurrent=None).cpus_per_worker > 2
    p = plan_placement(6, workers=2, cpus_per_worker=None, gpus_per_worker=0, concurrent=None, node_cpus=[2, 2, 2])
    assert p.cpus_per_worker <= 2 - p.driver_cpus and p.concurrent == 1
    p = plan_placement(24, workers=1, cpus_per_worker=None, gpus_per_worker=1, concurrent=None, node_cpus=[8, 8, 8])
    assert p.cpus_per_worker <= 8 - p.driver_cpus and p.concurrent == 2
    with pytest.raises(ConfigError, match="no node has that many CPUs"):
        plan_placement(6, workers=1, cpus_per_worker=3, gpus_per_worker=0, concurrent=None, node_cpus=[2, 2, 2])


def test_free_cpu_for_ray_data_must_be_whole_on_one_node():
    # 3 x 1.21 CPUs fit in the 5 of 6 the total leaves, but one worker per node leaves 0.8 on each.
    with pytest.raises(ConfigError, match="one whole CPU on one node"):
        plan_placement(6, workers=1, cpus_per_worker=1.2, gpus_per_worker=0, concurrent=3, node_cpus=[2, 2, 2])
    p = plan_placement(6, workers=1, cpus_per_worker=1.2, gpus_per_worker=0, concurrent=None, node_cpus=[2, 2, 2])
    assert p.concurrent == 2
    assert plan_placement(6, workers=1, cpus_per_worker=1.2, gpus_per_worker=0, concurrent=3).concurrent == 3  # one node
    # Two 1-CPU workers and one driver cannot cover a 2-CPU head and two 1-CPU nodes: one keeps a whole CPU.
    assert not ray_data_can_starve([2, 1, 1], workers=2, cpus_per_worker=1.0, drivers=1, driver_cpus=0.01)
    # ...but a second driver can (worker + driver on the head, a worker on one node, a driver on the other).
    assert ray_data_can_starve([2, 1, 1], workers=2, cpus_per_worker=1.0, drivers=2, driver_cpus=0.01)


@pytest.fixture(scope="module")
def three_nodes():
    """Head + two worker nodes, 2 logical CPUs each, torn down after the module."""
    from ray.cluster_utils import Cluster

    tmp = f"/tmp/ablate-mn-{os.getpid()}"
    # Cluster records its address in /tmp/ray/ray_current_cluster, where any
    # `ray.init(address="auto")` on this machine would find it: keep it private.
    with mock.patch("ray._private.utils.write_ray_address", lambda *a, **k: None):
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 2, "temp_dir": tmp, "include_dashboard": True, "dashboard_host": "127.0.0.1",
            # Other Ray instances on this machine may hold the default ports.
            "dashboard_port": free_port(), "dashboard_agent_listen_port": None})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=2, temp_dir=tmp)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)  # Ray's session files and logs


@pytest.mark.ray
def test_grid_over_three_nodes_spreads_ddp_workers(three_nodes, drive32, tiny_grid, tmp_path):
    out = tmp_path / "mn"
    log = tmp_path / "launch.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([*ABLATE_COMMAND, "launch", "--grid", str(tiny_grid), "--data", str(drive32), "--out", str(out),
                                 "--address", three_nodes.address, "--workers", "2", "--no-evaluate"],
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=480)  # ~2 min on an idle 2-core machine
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
    text = log.read_text(errors="replace")
    assert rc == 0, f"launch exited {rc}:\n{text[-4000:]}"
    # Sized per node, not from the 6-CPU total: one worker per node, one trial at a time.
    assert "placement: 2 worker(s) x 1.95 CPU per trial, 1 trial(s) at a time" in text

    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == 2 and (df["status"] == "done").all() and (df["steps"] == 6).all()
    cluster_nodes = {n.node_id[:12] for n in three_nodes.list_all_nodes()}
    assert len(cluster_nodes) == 3
    used = set()
    for _, row in df.iterrows():
        nodes = row["node/workers"].split(",")  # each rank's own node id, gathered by rank 0
        assert len(nodes) == 2 and len(set(nodes)) == 2, f"{row['trial']}: both workers on {nodes}"
        assert set(nodes) <= cluster_nodes
        used |= set(nodes)
        # Each worker read its own half of the 18 training images of the Ray Data stream.
        assert row["data/rows_per_worker_epoch0"] == "9,9" and row["data/shared_rows_epoch0"] == 0
    assert len(used) >= 2
