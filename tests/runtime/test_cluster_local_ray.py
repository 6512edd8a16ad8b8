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
