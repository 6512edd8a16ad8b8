"""One generic driver: fit one TorchTrainer run.

Every program here trains through Ray Train the same way (as Ray's own
`TorchTrainer` is a short specialisation of `DataParallelTrainer`):

- `fit_torch_run` builds and fits one TorchTrainer. The ablation grid calls it from
  each Tune trial (`train/driver.py`), with Tune's report callback and Tune's
  placement.
- `fit_standalone` is the whole life of a program that is not a Tune trial
  (`fm pretrain`, `segmenter train`): start or join Ray, plan the placement on the
  nodes present, fit, shut Ray down if it started it, and refuse a run that ended
  without a checkpoint.
- `RunOptions` is the schedule and placement every such program takes.
- `run_folders` names the run after its output file and a hash of its whole
  configuration, so re-running the same command resumes an interrupted run from its
  last checkpoint while any change of configuration starts a fresh one.
- `final_state` reads the state file of the final checkpoint and checks that the
  run reached the step it was asked for.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate.errors import InvalidInput
from ablate.runtime.cluster import node_cpus, node_gpus, ray_session, total_cpus
from ablate.runtime.placement import Placement, plan_placement


@dataclass(frozen=True)
class RunOptions:
    """What `fm pretrain` and `segmenter train` share: the step schedule of their one
    Train run and where it runs. Each program has its own defaults (`FM_RUN`, `SEGMENTER_RUN`).

    Args:
        steps: optimizer steps (as many passes over the data as needed).
        batch_size: global batch, split evenly over the workers.
        lr: peak learning rate (linear warm-up, then cosine to 0).
        workers: Train workers (DDP ranks).
        warmup_steps: None = 5 % of the steps.
        log_every / image_every / checkpoint_every: steps between scalars, pictures and
            checkpoints (None: a tenth of the steps for pictures, min(500, steps) for checkpoints).
        seed: model init and data order.
        address: a Ray cluster to join ('auto'), None to start one here.
        cpus_per_worker: None to fill the nodes, one CPU kept free for Ray Data.
        gpus_per_worker: GPUs per worker (fractions allowed).
        tb_dir: TensorBoard folder (default: <out dir>/tensorboard/<run>).
        storage_dir: the Train run's checkpoints (default: <out dir>/train).
        max_failures: worker-group restarts from the last checkpoint when a worker dies (a lost
            node, a killed process); -1 for unlimited. A ConfigError is never retried.
    """

    steps: int
    batch_size: int
    lr: float
    workers: int = 1
    warmup_steps: int | None = None
    log_every: int = 20
    image_every: int | None = None
    checkpoint_every: int | None = None
    seed: int = 0
    address: str | None = None
    cpus_per_worker: float | None = None
    gpus_per_worker: float = 0.0
    tb_dir: str | os.PathLike | None = None
    storage_dir: str | os.PathLike | None = None
    max_failures: int = 2

    def check(self) -> None:
        """ValueError naming the option, before Ray starts."""
        for name in ("steps", "batch_size", "workers", "log_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidInput(f"{name} must be an integer >= 1, got {v!r}")
        if not self.lr > 0:
            raise InvalidInput(f"lr must be > 0, got {self.lr}")
        if isinstance(self.max_failures, bool) or not isinstance(self.max_failures, int) or self.max_failures < -1:
            raise InvalidInput(f"max_failures must be an integer >= 0, or -1 for unlimited, got {self.max_failures!r}")
        if self.batch_size % self.workers:
            raise InvalidInput(f"batch_size {self.batch_size} is not divisible by {self.workers} workers")

    @property
    def warmup(self) -> int:
        return round(0.05 * self.steps) if self.warmup_steps is None else int(self.warmup_steps)

    def hashed(self) -> dict:
        """The options that change the trained result (they name the run)."""
        return {"steps": self.steps, "batch_size": self.batch_size, "lr": self.lr, "warmup_steps": self.warmup,
                "seed": self.seed}

    def loop_config(self) -> dict:
        """What the per-worker loop reads (beside the program's own options)."""
        return {**self.hashed(), "log_every": self.log_every,
                "image_every": self.image_every or max(1, self.steps // 10),
                "checkpoint_every": self.checkpoint_every or min(500, self.steps)}


@dataclass(frozen=True)
class RunFolders:
    name: str  # <output stem>-<hash of the configuration>
    tb_dir: Path  # TensorBoard events (rank 0 writes them: Ray Train V2 writes none)
    storage: Path  # Ray Train's storage_path; the run's checkpoints are under storage / name

    @property
    def run_dir(self) -> Path:
        return self.storage / self.name


def program_run(verbose: bool, **options) -> RunOptions:
    """The start every one-Train-run command shares (`fm pretrain`, `segmenter train`): Ray's
    own output here or only in the run's logs/ (`verbose`), and the run's options.

    Args:
        verbose: show Ray's output (Ray Data bars, worker logs) on this terminal.
        options: RunOptions' fields, as the command line gave them.
    """
    from ablate.runtime import ray_output

    ray_output.set_verbose(verbose)
    return RunOptions(**options)


def where_the_run_is(tb_dir: Path, run_dir: Path, verbose: bool) -> list[str]:
    """The lines every one-Train-run command ends with: where its curves, checkpoints and
    (when not shown here) Ray's output are."""
    lines = [f"tensorboard --logdir {tb_dir}", f"Train run and checkpoints: {run_dir}"]
    if not verbose:
        lines.append(f"Ray's output (Ray Data, raylet, workers): {run_dir}/logs/ (--verbose shows it here)")
    return lines


def config_digest(config: dict) -> str:
    """8 hex digits of the sha256 of the configuration's canonical JSON."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_folders(out_file: Path, config: dict, tb_dir: str | os.PathLike | None = None,
                storage_dir: str | os.PathLike | None = None) -> RunFolders:
    """Defaults: <out dir>/tensorboard/<run> and <out dir>/train/<run>, run = <out stem>-<config hash>."""
    name = f"{out_file.stem}-{config_digest(config)}"
    return RunFolders(
        name=name,
        tb_dir=Path(tb_dir).resolve() if tb_dir else out_file.parent / "tensorboard" / name,
        storage=Path(storage_dir).resolve() if storage_dir else out_file.parent / "train",
    )


def fit_torch_run(loop: Callable[[dict], None], loop_config: dict, *, datasets: dict, placement: Placement,
                  name: str, storage_path: str, max_failures: int = 0, callbacks: tuple = (),
                  num_to_keep: int = 2, unsplit: tuple[str, ...] = ()) -> Any:
    """Build and fit one TorchTrainer; returns its `ray.train.Result`.

    Args:
        loop: the per-worker function Ray Train runs on every rank.
        loop_config: its argument (carried by value to the workers).
        datasets: Ray Data datasets by name, sharded over the workers.
        placement: workers, CPUs and GPUs per worker.
        name: the run's name (stable across restarts, so a restart finds its checkpoints).
        storage_path: a local folder or a URI; Ray Train writes the checkpoints there itself.
        max_failures: worker-group restarts from the last checkpoint.
        callbacks: Ray Train callbacks (the grid passes Tune's report callback).
        num_to_keep: checkpoints kept.
        unsplit: datasets every worker reads whole (the others are split over the workers, which
            Ray Train does in equal shares, dropping the rows left over: up to workers - 1).
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    from ablate.runtime.process_group import ProcessGroupConfig

    trainer = TorchTrainer(
        loop,
        train_loop_config=loop_config,
        torch_config=ProcessGroupConfig(),  # a local run's process group listens on 127.0.0.1 only
        scaling_config=placement.scaling_config(),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=num_to_keep),
            callbacks=list(callbacks),
        ),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=[n for n in datasets if n not in unsplit]),
    )
    return trainer.fit()


def _config_errors_not_retried(loop: Callable[[dict], None], config: dict) -> None:
    """The per-worker function `fit_standalone` hands Ray Train: `loop`, with a ConfigError
    reported once (and the run ended) instead of raised into `max_failures` restarts."""
    import ray.train

    from ablate.runtime.config_errors import without_retry

    without_retry(lambda: loop(config), ray.train.report, where="worker")


def fit_standalone(loop: Callable[[dict], None], loop_config: dict, datasets: Callable[[], dict], *,
                   folders: RunFolders, run: RunOptions) -> Any:
    """Fit a program's one Train run on Ray (started here unless `run.address` joins one).

    The loop's config gets `run.loop_config()`, `threads` (torch threads per worker, from
    the placement) and `tb_dir`. `datasets` is called once Ray is up. A worker that dies is
    restarted from the last checkpoint up to `run.max_failures` times; a ConfigError raised in
    the loop ends the run at once and is raised here. Raises RuntimeError naming the run when
    it ended without a checkpoint.
    """
    from ablate.runtime import ray_output
    from ablate.runtime.train_progress import step_progress
    from ablate.specs import ConfigError

    with ray_session(run.address):
        placement = plan_placement(total_cpus(), run.workers, run.cpus_per_worker, run.gpus_per_worker, concurrent=1,
                                   node_cpus=node_cpus(), node_gpus=node_gpus())
        try:
            with step_progress(folders.name, run.steps) as progress:
                result = fit_torch_run(functools.partial(_config_errors_not_retried, loop), {**loop_config, **run.loop_config(),
                                              "threads": placement.threads_per_worker, "tb_dir": str(folders.tb_dir)},
                                       datasets=datasets(), placement=placement, name=folders.name,
                                       storage_path=str(folders.storage), max_failures=run.max_failures,
                                       callbacks=(progress,))
        finally:  # quiet mode (the commands' default): Ray's logs beside the run's checkpoints
            ray_output.collect_logs(folders.run_dir)
    if progress.config_error is not None:
        raise ConfigError(f"the Train run {folders.run_dir} stopped: {progress.config_error}")
    if result.checkpoint is None:
        raise RuntimeError(f"the Train run {folders.run_dir} ended without a checkpoint")
    return result


def final_state(result: Any, state_file: str, steps: int, run_dir: Path) -> dict:
    """The state dict in `state_file` of the run's final checkpoint; RuntimeError unless its
    `step` is `steps` (a run cut short must not be passed off as finished)."""
    import torch

    with result.checkpoint.as_directory() as d:
        state = torch.load(Path(d) / state_file, map_location="cpu", weights_only=True)
    if int(state["step"]) != steps:
        raise RuntimeError(f"{run_dir}: final checkpoint is at step {state['step']}, expected {steps}")
    return state
