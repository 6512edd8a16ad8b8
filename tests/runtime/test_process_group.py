"""The process group of a Train run on the local Ray listens on 127.0.0.1 only (issue 25:
torch's TCP store, made by Ray's own backend, listened on every interface), and it is a
working group: two ranks all-reduce."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers.network import LOOPBACK


@pytest.mark.ray
def test_a_local_two_worker_run_makes_a_working_group_that_listens_on_loopback_only(tmp_path):
    out = tmp_path / "sockets"
    out.mkdir()
    code = textwrap.dedent(f"""
        import json, os
        import psutil, torch, torch.distributed as dist, ray.train
        from ablate.runtime import fit_torch_run, start_ray
        from ablate.runtime.placement import Placement

        def loop(config):
            rank = dist.get_rank()
            t = torch.tensor([rank + 1.0])
            dist.all_reduce(t)  # a group that works, not only one that exists
            dist.barrier()
            me = psutil.Process()
            listening = [[c.laddr.ip, c.laddr.port] for c in me.net_connections(kind="inet")
                         if c.status == psutil.CONN_LISTEN]
            with open(os.path.join({str(out)!r}, f"rank{{rank}}.json"), "w") as f:
                json.dump({{"sum": t.item(), "world": dist.get_world_size(), "env_rank": os.environ["RANK"],
                           "listening": listening}}, f)
            dist.barrier()  # every rank's sockets seen while the group is whole

        assert start_ray(None)
        r = fit_torch_run(loop, {{}}, datasets={{}}, placement=Placement(2, 0.5, 0, 1, 1, data_cpus=0),
                          name="pg", storage_path={str(tmp_path / "store")!r})
        print("ok", r.error)
    """)
    env = {**os.environ, "ABLATE_RAY_TMP": f"/tmp/ablate-pg-{os.getpid()}"}  # short: Ray's socket paths
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((out / f"rank{i}.json").read_text()) for i in range(2)]
    assert [x["sum"] for x in ranks] == [3.0, 3.0] and {x["world"] for x in ranks} == {2}
    assert [x["env_rank"] for x in ranks] == ["0", "1"]
    assert ranks[0]["listening"], "rank 0 holds the store's listening socket: none seen, so the check saw nothing"
    exposed = [(i, s) for i, x in enumerate(ranks) for s in x["listening"] if s[0] not in LOOPBACK]
    assert not exposed, f"a Train worker listens beyond loopback: {exposed}"
