"""TensorBoard (ablate.runtime.tensorboard, `ablate tensorboard`): the child process stops with the command that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

# ---------------------------------------------------------------- finding 8: TensorBoard stopped with us


@pytest.mark.fault
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_tensorboard_child_stopped_when_ablate_is_killed(tmp_path, sig):
    """Finding F8 (issue 20): SIGKILL reaches no handler of ours: the kernel's parent-death signal stops TensorBoard (issue 25)."""
    (tmp_path / "exp" / "tensorboard" / "t").mkdir(parents=True)
    pid_file = tmp_path / "tb.pid"
    fake = tmp_path / "tensorboard"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 120\n")
    fake.chmod(0o755)
    code = textwrap.dedent(f"""
        import ablate.report.cli as c
        c.tensorboard_command = lambda *a, **k: [{str(fake)!r}]
        from ablate.cli import app
        app(["tensorboard", {str(tmp_path / "exp")!r}])
    """)
    ablate = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    end = time.time() + 30
    while not (pid_file.is_file() and pid_file.read_text().strip()) and time.time() < end:
        time.sleep(0.1)
    child = int(pid_file.read_text())
    ablate.send_signal(sig)
    ablate.wait(timeout=20)
    end = time.time() + 15
    while time.time() < end:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail(f"TensorBoard (PID {child}) outlived `ablate tensorboard` stopped by {sig.name}")
    assert ablate.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 128 + sig)
