"""Train steps to the driver (ablate.runtime.train_progress): they reach it from the Train controller."""

from __future__ import annotations

import pytest


def test_train_steps_reach_the_driver_from_the_train_controller():
    pytest.importorskip("ray")
    from ablate.runtime.train_progress import StepsToDriver

    class FakeQueue(list):
        put = list.append

    q = FakeQueue()
    cb = StepsToDriver(q)
    cb.after_report(None, [{"step": 500, "fm/loss": 0.1}, {"step": 500}], None)
    cb.after_report(None, [{"fm/loss": 0.1}], None)  # a report without a step moves nothing
    cb.after_report(None, [{"config_error": "ConfigError: bad key"}], None)  # runtime/config_errors.py's report
    assert q == [("step", 500), ("config_error", "ConfigError: bad key")]
