"""Configuration errors are not retried (ablate.runtime.config_errors): found behind Ray's wrappers; driver and worker both run without a retry."""

from __future__ import annotations

from ablate.config import ConfigError

# ---------------------------------------------------------------- 6: configuration errors are not retried


def test_config_error_found_behind_ray_wrappers():
    from ray.exceptions import RayTaskError
    from ray.train import WorkerGroupError

    from ablate.runtime.config_errors import config_error

    bad = ConfigError("g.yaml: combinations.a.model.ch: must be an integer >= 1, got -5")
    workers = WorkerGroupError("workers failed", {0: RuntimeError("collateral"), 1: bad})
    assert config_error(workers) is bad
    try:
        try:
            raise bad
        except ConfigError as e:
            raise RuntimeError("wrapped") from e
    except RuntimeError as chained:
        assert config_error(chained) is bad
    assert config_error(RayTaskError("run_trial", "tb", bad)) is bad
    assert config_error(WorkerGroupError("lost node", {0: RuntimeError("node died")})) is None
    assert config_error(OSError("disk full")) is None


def test_driver_and_worker_both_run_under_without_retry():
    """run_trial needs a Tune session to call; its wiring is checked in its source instead."""
    import inspect

    from ablate.train import driver, loop

    source = inspect.getsource(driver.fit_trial)  # run_trial (a grid) and run_search_trial (tuned arms, stage 1) both call it
    # the autoencoder's fit and the prior stage after it, both under one without_retry
    assert "without_retry(fit_then_prior, tune.report" in source
    body = source[source.index("def fit_then_prior"):source.index("without_retry(fit_then_prior")]
    assert "fit_torch_run(" in body and "prior_stage(" in body
    assert "without_retry(" in inspect.getsource(loop.train_loop_per_worker)
