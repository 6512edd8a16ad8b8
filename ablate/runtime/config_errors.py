"""A configuration error inside a trial fails it once, never retried.

Ray Train restarts a worker group up to `max_failures` times and Tune retries a trial
`trial_retries` times, whatever the error: right for a lost node, minutes wasted for a
trial whose configuration is simply wrong (it fails the same way every time). Neither
Ray layer takes a per-exception policy, so a `ConfigError` is not left to reach them:
`without_retry` runs the worker loop (and the trial's driver) and turns a ConfigError,
found anywhere in the exception's chain or in Ray's wrappers of it, into one report
`{CONFIG_ERROR: message}` and a normal return. The trial then ends at once, and the
results table shows it as `error` with the message in its `error` column
(runtime/results.py). Any other exception is re-raised untouched: it may be a fault
worth a retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ablate.specs import ConfigError

logger = logging.getLogger(__name__)

CONFIG_ERROR = "config_error"  # the metric that carries the message to Tune and the results table


def config_error(exc: BaseException | None) -> ConfigError | None:
    """The ConfigError behind `exc`: itself, its cause or context, a Ray task error's cause, or
    any worker's failure inside Ray Train's TrainingFailedError (WorkerGroupError); else None."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ConfigError):
            return e
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None), getattr(e, "controller_failure", None)]
        failures = getattr(e, "worker_failures", None)  # ray.train.WorkerGroupError: {rank: exception}
        if isinstance(failures, dict):
            todo += [f for f in failures.values() if isinstance(f, BaseException)]
    return None


def without_retry(body: Callable[[], object], report: Callable[[dict], object], where: str = "trial") -> None:
    """Run `body`; a ConfigError behind what it raises is reported as {CONFIG_ERROR: message} through
    `report` (ray.train.report in a worker, ray.tune.report in a trial's driver) instead of raised,
    so no Ray layer retries it. In a worker every rank reaches the same error (the configuration is
    the same on each), so every rank reports once, as Ray Train requires."""
    try:
        body()
    except Exception as e:  # classified here; re-raised unless it is a configuration error
        err = config_error(e)
        if err is None:
            raise
        logger.error("%s: configuration error, not retried: %s", where, err)
        report({CONFIG_ERROR: f"ConfigError: {err}"[:2000]})
