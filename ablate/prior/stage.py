"""A trial's synthesis stage: after its autoencoder finishes, (a) encode the train and val
splits to code grids (codes.py, Ray Data), (b) train the code prior on them (loop.py, one
Ray Train run through the runtime's one driver: checkpoints, restarts from them, TensorBoard
under the trial's folder as `prior/...`), (c) draw `samples` images (draw.py, one Ray task on
the trial's worker resources). Everything lands under EXP/samples/<trial>/:

    chunk-NNNNN.parquet, contact_sheet.png   the samples (data/sample_store.py)
    prior/codes/                             the code shards
    prior/train/<run>/                       the prior's Train run and checkpoints

Re-running a trial (a resumed grid) re-uses the codes, resumes the prior's run from its last
checkpoint (the run is named after the trial) and draws only the chunks still missing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from ablate import storage
from ablate.data.labels import Condition
from ablate.data.sample_store import PRIOR_DIR
from ablate.experiment_layout import ExperimentLayout
from ablate.prior.progress import PriorStage
from ablate.runtime import Placement
from ablate.specs import TrialSpec

logger = logging.getLogger(__name__)


def prior_loop_config(spec: TrialSpec, grid: tuple[int, int], vocab: int, splits: list[str], threads: int,
                      tb_dir: str, condition: Condition | None = None) -> dict:
    """What `prior_train_loop` reads, from the trial's `prior:` block (and its condition's
    column, values and train counts, for a conditional prior)."""
    p = spec.prior
    assert p is not None and spec.prior_seed is not None  # only trials with a prior get here
    return {"prior": dataclasses.asdict(p), "grid": list(grid), "vocab": vocab, "seed": spec.prior_seed,
            "steps": p.steps, "batch_size": p.batch_size, "lr": p.lr, "warmup_steps": round(0.05 * p.steps),
            "log_every": p.log_every, "checkpoint_every": min(p.checkpoint_every, p.steps),
            "precision": spec.train.precision, "threads": threads, "tb_dir": tb_dir, "splits": splits,
            **({"condition": condition.record()} if condition is not None else {})}


def run_prior_stage(spec: TrialSpec, *, trial: str, exp_dir: str, data_dir: str, autoencoder: str,
                    placement: Placement, max_failures: int = 0, callbacks: tuple = (),
                    on_stage: Callable[[PriorStage], None] | None = None) -> dict:
    """Train the trial's prior and draw its samples; returns the `prior.*` metrics for the
    results table (`prior.steps`, `prior.loss`, `prior.val_loss`, `prior.samples`). Needs Ray.

    Args:
        spec: the trial (its `prior` block must be set).
        trial: the trial's name (its folder under samples/).
        exp_dir: the experiment folder (local or URI).
        data_dir: the prepared dataset the autoencoder trained on.
        autoencoder: the autoencoder's final checkpoint folder.
        placement: the trial's workers (the prior uses the same).
        max_failures: worker-group restarts from the prior's last checkpoint.
        callbacks: Ray Train callbacks of the prior's run.
        on_stage: called as each part begins (encoding, training, drawing): a trial tells Tune.
    """
    import ray
    import ray.data
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from ablate.prior.codes import encode_split
    from ablate.prior.draw import DrawRequest, draw_samples
    from ablate.prior.loop import UNSPLIT, prior_train_loop
    from ablate.runtime import checkpoint_location, fit_torch_run

    p = spec.prior
    assert p is not None
    layout = ExperimentLayout(exp_dir)
    folder = layout.trial_samples(trial)
    work = storage.join(folder, PRIOR_DIR)
    condition = Condition.of_dataset(data_dir, p.condition) if p.condition is not None else None
    announce = on_stage or (lambda stage: None)
    announce(PriorStage.ENCODING)
    codes = {s: encode_split(data_dir, s, spec.data.size, autoencoder, storage.join(work, "codes"),
                             threads=placement.threads_per_worker, gpus=placement.gpus_per_worker, condition=condition)
             for s in ("train", "val")}
    train = codes["train"]
    if train is None:
        raise ValueError(f"{data_dir}: the train split is empty; a prior has nothing to learn")
    datasets = {s: ray.data.read_parquet(c.folder) for s, c in codes.items() if c is not None}
    given = "" if condition is None else f", conditioned on {condition.column} ({len(condition.values)} values)"
    logger.info(f"{trial}: training its prior ({p.layers} layers, width {p.width}{given}) on {train.rows} code grids "
                f"of {train.grid[0]}x{train.grid[1]} for {p.steps} steps")
    announce(PriorStage.TRAINING)
    result = fit_torch_run(
        prior_train_loop,
        prior_loop_config(spec, train.grid, train.vocab, sorted(datasets), placement.threads_per_worker,
                          layout.tensorboard_run(trial), condition),  # the trial's own TensorBoard folder: prior/... tags
        datasets=datasets, placement=placement, name=f"prior-{trial}", storage_path=storage.join(work, "train"),
        max_failures=max_failures, callbacks=callbacks, unsplit=UNSPLIT)
    if result.checkpoint is None:
        raise RuntimeError(f"{trial}: the prior's Train run under {work} ended without a checkpoint")
    m = dict(result.metrics or {})
    prior_ckpt = checkpoint_location(result.checkpoint)
    # On the trial's worker resources, outside the trial's own placement group (Tune's holds
    # only the trial driver's sliver of CPU, and would capture the task into it). None means
    # no group in Ray's documentation; its type annotation omits it.
    outside = PlacementGroupSchedulingStrategy(placement_group=None)  # type: ignore[arg-type]
    announce(PriorStage.DRAWING)
    task = ray.remote(num_cpus=placement.cpus_per_worker, num_gpus=placement.gpus_per_worker,
                      scheduling_strategy=outside)(draw_samples)
    drawn = ray.get(task.remote(DrawRequest(folder=folder, prior=prior_ckpt, autoencoder=str(autoencoder),
                                            total=p.samples, top_k=p.top_k, temperature=p.temperature,
                                            precision=spec.train.precision,
                                            use_gpu=placement.gpus_per_worker > 0), placement.threads_per_worker))
    return {"prior.steps": m.get("step"), "prior.loss": m.get("prior/loss"),
            "prior.val_loss": m.get("prior/val_loss", float("nan")), "prior.samples": drawn["total"],
            "prior.checkpoint": prior_ckpt}

