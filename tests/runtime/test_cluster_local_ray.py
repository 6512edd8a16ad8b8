"""The local Ray that `start_ray` starts (ablate.runtime.cluster) listens on loopback only (its own file: it starts Ray)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

# ---------------------------------------------------------------- finding 9: loopback only


@pytest.mark.ray
def test_local_ray_listens_on_loopback_only(tmp_path):
    """Finding F9 (issue 20): Every listening socket of the Ray that `start_ray` starts, measured (psutil comes with Ray)."""
    code = textwrap.dedent("""
        import json, os
        from ablate.runtime import start_ray
        import ray
        assert start_ray(None)
        ray.get(ray.remote(lambda: 1).remote())  # a worker process up too
        import psutil
        me = psutil.Process()
        seen = []
        for p in [me, *me.children(recursive=True)]:
            try:
                seen += [[p.name(), c.laddr.ip, c.laddr.port] for c in p.net_connections(kind="inet")
                         if c.status == psutil.CONN_LISTEN]
            except psutil.Error:
                pass
        print(json.dumps(seen))
        ray.shutdown()
    """)
    env = {**os.environ, "ABLATE_RAY_TMP": f"/tmp/ablate-lo-{os.getpid()}"}  # short: Ray's socket paths
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    sockets = json.loads(r.stdout.strip().splitlines()[-1])
    names = {n for n, _, _ in sockets}
    assert any("gcs_server" in n for n in names) and any("raylet" in n for n in names), sockets
    exposed = [s for s in sockets if s[1] not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    assert not exposed, f"listening beyond loopback: {exposed}"


# ---------------------------------------------------------------- the State API beside another Ray


@pytest.mark.ray
def test_the_state_api_finds_its_own_ray_beside_another(tmp_path):
    """Ray Train's PlacementGroupCleaner asks the State API whether a controller is alive; with
    no address it looks for "the" Ray on this machine and, with two running, fails ("Found
    multiple active Ray instances"), leaving a stopped trial's placement group behind. Two Rays
    started here: an actor's nested actor (as a Tune trial's Train controller is) reaches its
    own Ray's State API."""
    code = textwrap.dedent("""
        import os, subprocess, sys
        # The other Ray: started first, stopped (ray.shutdown) when its stdin closes.
        other = subprocess.Popen([sys.executable, "-c",
            "from ablate.runtime import start_ray; import ray, sys; start_ray(None); print('up', flush=True); "
            "sys.stdin.read(); ray.shutdown()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "ABLATE_RAY_TMP": os.environ["ABLATE_RAY_TMP"] + "b"})
        try:
            assert other.stdout.readline().strip() == "up"
            from ablate.runtime import start_ray
            import ray
            assert start_ray(None)

            @ray.remote(num_cpus=0)
            class Inner:
                def actors(self):
                    from ray.util.state import list_actors
                    return os.environ.get("RAY_API_SERVER_ADDRESS"), sorted(a.class_name for a in list_actors())

            @ray.remote(num_cpus=0)
            class Outer:
                def ask(self):
                    return ray.get(Inner.remote().actors.remote())

            address, names = ray.get(Outer.remote().ask.remote())
            print("ok", address, ",".join(names))
            ray.shutdown()
        finally:
            other.communicate(timeout=120)
    """)
    env = {**os.environ, "ABLATE_RAY_TMP": f"/tmp/ablate-sa-{os.getpid()}"}
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    ok, address, names = r.stdout.strip().splitlines()[-1].split(" ")
    assert ok == "ok" and address.startswith("http://127.0.0.1:")
    assert {"Inner", "Outer"} <= set(names.split(","))  # this Ray's actors, from its own State API
