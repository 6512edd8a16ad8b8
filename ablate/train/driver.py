"""The per-trial driver: Tune calls `run_trial` once per trial; it builds the
trial's Ray Data streams and fits a TorchTrainer whose reports reach Tune
through TuneReportCallback (the Ray >= 2.51 Tune + Train pattern).

Kept apart from the per-worker loop (loop.py): this runs in the trial's
driver process with a sliver of CPU; the heavy work runs in the workers.
"""

from __future__ import annotations

import time

from ablate.experiment_layout import ExperimentLayout
from ablate.runtime import Placement
from ablate.specs import TrialSpec


def trial_key(spec: TrialSpec) -> str:
    return f"{spec.combination}-s{spec.seed}"


def run_trial(config: dict, *, trials: dict[str, TrialSpec], data_dir: str, exp_dir: str, placement: Placement,
              max_failures: int = 0, weights_manifest: dict | None = None) -> None:
    """Tune's trainable of a grid: the trial its config names (`trial`), trained under EXP/train."""
    from ray import tune

    fit_trial(trials[config["trial"]], tune.get_context().get_trial_name(), data_dir=data_dir, exp_dir=exp_dir,
              placement=placement, max_failures=max_failures, weights_manifest=weights_manifest,
              train_storage=ExperimentLayout(exp_dir).train)


def fit_trial(spec: TrialSpec, trial_name: str, *, data_dir: str, exp_dir: str, placement: Placement,
              max_failures: int, weights_manifest: dict | None, train_storage: str,
              shared: dict | None = None) -> None:
    """Train one trial (and its prior, when it has one) inside a Tune trial: its Ray Data
    streams of the train and val splits (never test), a TorchTrainer run named after the Tune
    trial under `train_storage`, reports forwarded to Tune.

    Args:
        spec: the trial, by value.
        trial_name: Tune's name of the trial (stable across a restore): the Train run's name.
        train_storage: where Ray Train keeps the run's checkpoints (EXP/train for a grid's
            trial, EXP/search/<combination>/train for a stage-1 trial of tuned arms).
        shared: the train and val splits already decoded in the object store (a search's
            trials share them: `search_stage.shared_splits`); None reads and decodes them here.
    """
    started = time.time()
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from ablate.data.feed import cache_fits, share_mb
    from ablate.data.shards import read_manifest
    from ablate.data.stream import split_dataset
    from ablate.runtime import fit_torch_run
    from ablate.runtime.config_errors import without_retry
    from ablate.train.loop import train_loop_per_worker

    datasets = shared or {
        # Checksums were verified once by `launch` before any trial started.
        "train": split_dataset(data_dir, "train", spec.data.size, verify=False),
        "val": split_dataset(data_dir, "val", spec.data.size, verify=False),
    }
    train_rows = read_manifest(data_dir)["counts"]["train"]
    cache_train = cache_fits(train_rows, spec.data.size, placement.workers, spec.data.cache_mb)
    if not cache_train and spec.data.cache_mb > 0:
        # Said, not silent: every epoch will re-read and re-decode (BENCHMARKS.md: ~4x slower on small images).
        # A print, not a log record: this runs in the trial's Tune actor, where no handler of ours is set up
        # and Ray keeps the actor's stdout in the trial's log file (log_to_file, ray_output.py).
        print(f"{trial_key(spec)}: a worker's share of the train split is "
              f"{share_mb(train_rows, spec.data.size, placement.workers):.0f} MiB decoded, over "
              f"data.cache_mb {spec.data.cache_mb:g}; streaming and decoding it from Ray Data every epoch", flush=True)
    driver_marks = {"datasets_ready": time.time()}

    def fit_then_prior() -> None:
        result = fit_torch_run(
            train_loop_per_worker,
            {
                "spec": spec,
                # A local folder or a URI: TrialWriter uploads to object storage itself.
                "tb_dir": ExperimentLayout(exp_dir).tensorboard_run(trial_name),
                "threads": placement.threads_per_worker,
                "trial_started_at": started,
                "driver_marks": driver_marks,
                "cache_train": cache_train,
                "weights_manifest": weights_manifest or {},  # pretrained files shipped to other nodes
            },
            datasets=datasets,
            placement=placement,
            # Named after the trial (itself named from the trial id), so a restored
            # grid finds the same run folder and its checkpoints.
            name=trial_name,
            storage_path=train_storage,  # Ray Train writes s3:// (any pyarrow URI) itself
            max_failures=max_failures,
            callbacks=(TuneReportCallback(),),
        )
        if spec.prior is not None:
            prior_stage(spec, result, trial_name, exp_dir, data_dir, placement, max_failures)

    # A configuration error ends the trial here, reported, not raised: Tune would retry it (config_errors.py).
    without_retry(fit_then_prior, tune.report, where=trial_key(spec))


def prior_stage(spec: TrialSpec, result, trial_name: str, exp_dir: str, data_dir: str, placement: Placement,
                max_failures: int) -> None:
    """The synthesis stage of a trial whose autoencoder finished (ablate/prior/stage.py); its
    `prior.*` figures reach Tune in one more report that repeats the autoencoder's final one,
    so the results table still reads the trial's status, steps and checkpoint from it. While
    it runs, its progress reaches Tune too (ablate/prior/progress.py), for the live view."""
    from ray import tune

    from ablate.prior.progress import PriorStage, progress_report
    from ablate.prior.stage import run_prior_stage
    from ablate.runtime import checkpoint_location
    from ablate.train.prior_feed import PriorProgressToTune

    final = dict(result.metrics or {})
    if result.checkpoint is None or not final.get("final") or final.get("stop_reason"):
        print(f"{trial_key(spec)}: no prior trained: the autoencoder did not finish", flush=True)  # the trial's log
        return
    autoencoder = checkpoint_location(result.checkpoint)
    p = spec.prior
    assert p is not None  # only trials with a prior get here
    base = {**final, "checkpoint_path": autoencoder}

    def announce(stage: PriorStage) -> None:  # the live view shows the stage; minutes pass in each
        tune.report(progress_report(base, stage, steps_total=p.steps, samples_total=p.samples))

    figures = run_prior_stage(spec, trial=trial_name, exp_dir=exp_dir, data_dir=data_dir, autoencoder=autoencoder,
                              placement=placement, max_failures=max_failures, on_stage=announce,
                              callbacks=(PriorProgressToTune(base, p.steps, p.samples),))
    tune.report({**base, **figures})  # the last report: the autoencoder's final one, with the prior's figures
