"""Where Ray's own output goes: to files under the experiment (EXP/logs/), not the terminal.

Quiet (the default of `ablate launch`): workers' output is not forwarded to the driver
(`log_to_driver=False`: it stays in Ray's session log files), Ray Data draws no progress
bars (a cursor-movement redraw is a wall of `[A[A` in a log file), Tune prints no result
boxes (`RunConfig(verbose=0)`), and the driver's own `ray` loggers write to a file. At
the end of training the session's logs (raylet, workers, Ray Data, the driver's) are
copied to EXP/logs/. With `--verbose` everything is as Ray has it.

An `s3://` experiment: the logs are gathered locally (Ray writes them on local disk
anyway) and uploaded to EXP/logs/ at the end of training.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ablate import storage
from ablate.experiment_layout import ExperimentLayout

# Settled once per process by the command line (`ablate launch --verbose`).
_state: dict = {"verbose": True, "driver_log": None, "session_dir": None, "saved": {}, "saved_funcs": {}}

RAY_DATA_QUIET = {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}


def set_verbose(verbose: bool) -> None:
    """`ablate launch` calls this first: quiet unless --verbose. Library use (tests, other
    commands) keeps Ray's output as Ray has it."""
    _state["verbose"] = verbose


def is_verbose() -> bool:
    return _state["verbose"]


def init_kwargs() -> dict:
    """What `ray.init` takes for this mode: worker output forwarded or not, and the env
    vars (merged into the runtime_env) that turn Ray Data's progress bars off in every process."""
    if _state["verbose"]:
        return {"log_to_driver": True, "env_vars": {}}
    return {"log_to_driver": False, "env_vars": dict(RAY_DATA_QUIET)}


def tune_verbosity() -> int:
    """`tune.RunConfig(verbose=...)`: 0 silences Tune's status tables and result boxes; our
    live view shows the grid instead. Verbose: Tune's default (1)."""
    return 1 if _state["verbose"] else 0


def _console_handlers(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


def quiet_driver() -> Path | None:
    """Before `ray.init` (quiet mode): the `ray` loggers of this process write to a file,
    not the terminal, and this process's Ray Data draws no bars. Returns the file."""
    if _state["verbose"]:
        return None
    import ray  # noqa: F401  (sets up the `ray` logger and its console handler on import)

    os.environ.update(RAY_DATA_QUIET)  # read by ray.data.context on its import
    # Tune's new console output prints its experiment box whatever `verbose` says; the
    # older reporter prints nothing at verbose=0 (read when `fit` starts).
    _state["saved_funcs"].setdefault("air_env", os.environ.get("RAY_AIR_NEW_OUTPUT"))
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    _route_raylet_warnings()
    if "ray.data" in sys.modules:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
    if _state["driver_log"] is None:
        fd, path = tempfile.mkstemp(prefix="ablate-ray-driver-", suffix=".log")
        os.close(fd)
        _state["driver_log"] = Path(path)
        _swap_handlers(logging.FileHandler(path, encoding="utf-8"))
    return _state["driver_log"]


def _swap_handlers(handler: logging.Handler) -> None:
    names = ["ray"] + [n for n in logging.root.manager.loggerDict if n.startswith("ray.")]
    for name in names:
        lg = logging.getLogger(name)
        consoles = _console_handlers(lg)
        if consoles or name == "ray":
            _state["saved"].setdefault(name, []).extend(consoles)
            for h in consoles:
                lg.removeHandler(h)
            lg.addHandler(handler)


# Raylet messages that are warnings although Ray 2.60 sends some without a "WARNING" prefix:
# the worker-pool one reaches the driver (through the GCS error channel) as "10 PYTHON worker
# processes have been started on node: ..." (seen in CI, printed on the terminal in quiet mode).
RAYLET_WARNING_MARKERS = ("worker processes have been started on node",)


def is_raylet_warning(line: str) -> bool:
    text = line.lstrip()
    return text.startswith("WARNING") or any(m in text for m in RAYLET_WARNING_MARKERS)


def _route_raylet_warnings() -> None:
    """The raylet's warnings (e.g. "N worker processes have been started ... startup
    concurrency") to the driver's log file; its errors (a worker killed, out of memory)
    still reach the terminal. Ray prints both from a thread of the driver whatever
    `log_to_driver` says, through this one function of its worker module."""
    import ray._private.worker as ray_worker

    if "print_to_stdstream" in _state["saved_funcs"]:
        return
    # A private Ray function (2.60): another Ray may lack it; then raylet warnings stay on
    # the terminal, which costs noise, not correctness.
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None:
        logging.getLogger("ray").warning("this Ray has no ray._private.worker.print_to_stdstream: "
                                         "raylet warnings stay on the terminal")
        return

    def route(data, ignore_prefix):
        if data.get("pid") == "raylet":
            lines = list(data.get("lines", []))
            warnings = [ln for ln in lines if is_raylet_warning(ln)]
            for ln in warnings:
                logging.getLogger("ray").warning("(raylet) %s", ln)
            if len(warnings) == len(lines):
                return
            data = {**data, "lines": [ln for ln in lines if ln not in warnings]}
        original(data, ignore_prefix)

    _state["saved_funcs"]["print_to_stdstream"] = original
    ray_worker.print_to_stdstream = route


def restore_driver() -> None:
    """The `ray` loggers back on the terminal (after the run, or for a test)."""
    if "print_to_stdstream" in _state["saved_funcs"]:
        import ray._private.worker as ray_worker

        ray_worker.print_to_stdstream = _state["saved_funcs"].pop("print_to_stdstream")
    if "air_env" in _state["saved_funcs"]:
        before = _state["saved_funcs"].pop("air_env")
        if before is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = before
    for name, handlers in _state["saved"].items():
        lg = logging.getLogger(name)
        for h in [h for h in lg.handlers if isinstance(h, logging.FileHandler)
                  and _state["driver_log"] and h.baseFilename == str(_state["driver_log"])]:
            lg.removeHandler(h)
            h.close()
        for h in handlers:
            lg.addHandler(h)
    _state["saved"] = {}
    _state["driver_log"] = None


def note_session(session_dir: str | None) -> None:
    """`start_ray` records the session folder of the Ray it started (its logs/ are copied)."""
    _state["session_dir"] = session_dir


def logs_location(exp) -> str:
    return ExperimentLayout(exp).logs


def local_logs(exp) -> Path:
    """Where the logs are gathered on this machine: EXP/logs itself, or for an experiment
    on object storage a local folder named after it (uploaded to EXP/logs at the end)."""
    if not storage.is_uri(exp):
        return Path(ExperimentLayout(exp).logs)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(exp))
    return Path(tempfile.gettempdir(), "ablate-logs", name)


def collect_logs(exp) -> str | None:
    """Copy the Ray session's log files and the driver's log to EXP/logs/ (uploaded for a
    URI). None when Ray's output went to the terminal (verbose). Joined to a cluster
    (no session started here), only the driver's log: the nodes keep theirs, each under
    its Ray session folder."""
    if _state["verbose"]:
        return None
    dest, local = logs_location(exp), local_logs(exp)
    local.mkdir(parents=True, exist_ok=True)
    session = _state["session_dir"]
    if session and Path(session, "logs").is_dir():
        # Files and folders only: sockets and pipes of a live session cannot be copied.
        shutil.copytree(Path(session, "logs"), local / "ray", dirs_exist_ok=True,
                        ignore=lambda d, names: [n for n in names
                                                 if not (Path(d, n).is_file() or Path(d, n).is_dir())])
    if _state["driver_log"] is not None and _state["driver_log"].is_file():
        for h in logging.getLogger("ray").handlers:
            h.flush()
        shutil.copyfile(_state["driver_log"], local / "driver.log")
    if storage.is_uri(dest):
        storage.upload_dir(local, dest)
    return dest
