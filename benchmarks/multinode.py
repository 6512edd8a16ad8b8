"""Wall time of one small grid on a simulated 3-node Ray cluster vs a 1-node Ray
with the same total logical CPUs, run one after the other in this one script.

Both clusters are `ray.cluster_utils.Cluster`s on THIS machine: the 3-node one is
three raylets (2 logical CPUs each), the 1-node one a single raylet with 6. All
of them share the same physical cores, so the ratio shows what the multi-node
machinery costs (more raylets, cross-node object transfers, Ray Data scheduled
across nodes) and says nothing about the speed-up real extra machines would give.

Both runs use the same placement (`--cpus-per-worker 1.2 --concurrent 2` by
default: one worker per node on the 3-node cluster, so two trials at a time
there; the same two at a time on the 1-node one) and `ablate launch --address`
as a user would, with evaluation off.

    .venv/bin/python benchmarks/multinode.py
    .venv/bin/python benchmarks/multinode.py --data data/mine --size 64 --steps 20
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DRIVE = ROOT.parent / "shared" / "data" / "drive"

GRID = """
name: multinode
base:
  data: {size: 32, augment: {hflip: true, rotate_deg: 5}}
  model: {preset: tiny}
  train: {steps: 6, batch_size: 4, lr: 1.0e-3, log_every: 2, image_every: 3, val_every: 3,
          val_batches: 1, checkpoint_every: 3}
  losses:
    codebook: {weight: 1.0}
combinations:
  l1: {losses: {l1: {weight: 1.0}}}
  l2: {losses: {l2: {weight: 1.0}}}
seeds: [0, 1]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(node_cpus: list[int], tmp: str):
    from ray.cluster_utils import Cluster

    # Cluster records its address in /tmp/ray/ray_current_cluster, where any
    # `ray.init(address="auto")` on this machine would find it: keep it private.
    with mock.patch("ray._private.utils.write_ray_address", lambda *a, **k: None):
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": node_cpus[0], "temp_dir": tmp, "include_dashboard": True, "dashboard_host": "127.0.0.1",
            # Other Ray instances on this machine may hold the default ports.
            "dashboard_port": _free_port(), "dashboard_agent_listen_port": None})
    try:
        for n in node_cpus[1:]:
            cluster.add_node(num_cpus=n, temp_dir=tmp)
        cluster.wait_for_nodes()
    except BaseException:
        cluster.shutdown()
        raise
    return cluster


def run_grid(label: str, node_cpus: list[int], grid: Path, data: Path, work: Path, extra: list[str]) -> dict:
    out = work / label
    tmp = f"/tmp/ablate-bm-{os.getpid()}-{label}"
    load_before = os.getloadavg()[0]
    t0 = time.time()
    try:
        cluster = start_cluster(node_cpus, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    up = time.time() - t0
    try:
        t1 = time.time()
        proc = subprocess.run([sys.executable, "-m", "ablate.cli", "launch", "--grid", str(grid), "--data", str(data),
                               "--out", str(out), "--address", cluster.address, "--no-evaluate", *extra],
                              check=False, capture_output=True, text=True)
        launch_s = time.time() - t1
    finally:
        cluster.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    (work / f"{label}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"{label}: launch failed ({proc.returncode}); log in {work / f'{label}.log'}:\n{proc.stderr[-3000:]}")
    fit = re.search(r"(\d+) trials in ([\d.]+) s wall", proc.stdout)
    placement = re.search(r"placement: .*", proc.stdout)
    df = pd.read_parquet(out / "results.parquet")
    if not (df["status"] == "done").all():
        sys.exit(f"{label}: not every trial finished:\n{df[['trial', 'status']]}")
    return {"label": label, "nodes": len(node_cpus), "cluster_up_s": up, "launch_s": launch_s,
            "fit_s": float(fit.group(2)), "placement": placement.group(0) if placement else "?",
            "startup_s": df["time/startup_s"].tolist(), "trial_wall_s": df["wall_time_s"].tolist(),
            "nodes_used": len(set(",".join(df["node/workers"]).split(","))),
            "load": (load_before, os.getloadavg()[0])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="prepared dataset (default: DRIVE beside the project, prepared at 32 px)")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--cpus-per-worker", default="1.2")
    ap.add_argument("--concurrent", default="2")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ablate-multinode-"))
    grid = work / "multinode.yaml"
    grid.write_text(GRID)
    if args.data:
        data = Path(args.data).resolve()
    else:
        from ablate.data.shards import prepare

        data = work / "drive32"
        prepare(DRIVE, data, size=32)
    extra = ["--cpus-per-worker", args.cpus_per_worker, "--concurrent", args.concurrent]
    if args.size:
        extra += ["--size", str(args.size)]
    if args.steps:
        extra += ["--steps", str(args.steps)]

    print(f"{os.cpu_count()} CPU core(s) on this machine; every simulated node shares them. Logs in {work}")
    runs = [run_grid("3-node", [2, 2, 2], grid, data, work, extra),
            run_grid("1-node", [6], grid, data, work, extra)]
    for r in runs:
        print(f"\n{r['label']} ({r['nodes']} raylet(s), Train workers landed on {r['nodes_used']} node(s)); {r['placement']}")
        print(f"  cluster start {r['cluster_up_s']:.1f} s; `ablate launch` {r['launch_s']:.1f} s; Tune fit {r['fit_s']:.1f} s")
        print(f"  machine load average (1 min) before / after: {r['load'][0]:.1f} / {r['load'][1]:.1f}")
        print(f"  per-trial start-up (time/startup_s): {', '.join(f'{s:.1f}' for s in r['startup_s'])} s; "
              f"per-trial wall: {', '.join(f'{s:.1f}' for s in r['trial_wall_s'])} s")
    three, one = runs
    print(f"\nratio 3-node / 1-node: launch {three['launch_s'] / one['launch_s']:.2f}, Tune fit {three['fit_s'] / one['fit_s']:.2f}, "
          f"mean start-up {sum(three['startup_s']) / len(three['startup_s']) / (sum(one['startup_s']) / len(one['startup_s'])):.2f}")
    print("(simulated nodes on one machine: this is the overhead of the multi-node machinery, not a scale-out speed-up)")


if __name__ == "__main__":
    main()
