"""The per-worker loop that trains a trial's code prior under Ray Train (DDP across workers,
bf16 autocast on CUDA, checkpoints and resume through the shared StepLoop): next-code
cross-entropy with the pkeep corruption of the inputs, AdamW, warm-up then cosine.

Each worker holds its shard of the code grids in memory (they are small: h*w int32 each) and
reshuffles it every epoch with a seed of (prior seed, rank, epoch). TensorBoard scalars go
under the trial's folder as `prior/...`; the validation split's cross-entropy (without
corruption) is `prior/val_loss` at every checkpoint and at the end, over every val grid: the
run gives each worker the whole val split (`UNSPLIT`; Ray Train's equal split would drop the
grids left over, all of them when there are fewer than workers) and each takes its share.

With `condition` in the config (a label column, data/labels.py) the prior is conditional:
one start token per label value, and each grid is learned (and validated) from its own
image's label; the prior file records the column, its values and their train counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ablate.prior.prior_file import PRIOR_FILE, PRIOR_STATE_FILE, save_prior


def grids_of(shard, labelled: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Every code grid of this worker's shard, int64 (N, h*w), and with `labelled` each one's
    class, int64 (N,) (None without)."""
    codes, labels = [], []
    for b in shard.iter_batches(batch_size=256, batch_format="numpy"):
        r = np.asarray(b["codes"])
        if len(r):
            codes.append(np.stack(list(r)) if r.dtype == object else r)
            if labelled:
                labels.append(np.asarray(b["label"]))
    grids = np.concatenate(codes).astype(np.int64) if codes else np.zeros((0, 0), np.int64)
    if not labelled:
        return grids, None
    return grids, np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64)


UNSPLIT = ("val",)  # the datasets the prior's Train run gives every worker whole (fit_torch_run's `unsplit`)


def share_of(codes: np.ndarray, labels: np.ndarray | None, rank: int, world: int
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """This rank's share of a split every rank reads whole (and its grids' classes): every
    world-th grid from the rank's, in lexicographic order of (grid, class), so the shares
    partition the split whatever order Ray Data read it in on each rank."""
    if len(codes) == 0:
        return codes, labels
    keys = ([] if labels is None else [labels]) + list(codes.T[::-1])  # lexsort: the last key sorts first
    order = np.lexsort(keys)[rank::world]
    return codes[order], None if labels is None else labels[order]


def batches(codes: np.ndarray, labels: np.ndarray | None, per_worker: int, seed: int, rank: int, epoch: int,
            device) -> Iterator:
    """One pass over this worker's grids in a seeded order: (codes (B, h*w), labels (B,) or None) on `device`."""
    import torch

    state = np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0]
    order = np.random.default_rng(int(state)).permutation(len(codes))
    for start in range(0, len(order) - per_worker + 1, per_worker):  # whole batches only: DDP ranks stay in step
        take = order[start:start + per_worker]
        yield (torch.from_numpy(codes[take]).to(device),
               None if labels is None else torch.from_numpy(labels[take]).to(device))


def prior_train_loop(config: dict) -> None:
    """Per-worker loop (config: `prior` (the PriorSpec as a dict), `grid`, `vocab`, `seed`, `steps`,
    `batch_size`, `lr`, `warmup_steps`, `log_every`, `checkpoint_every`, `precision`, `threads`, `tb_dir`,
    and `condition` (Condition.record()) for a conditional prior)."""
    import ray.train
    import torch

    from ablate.models.code_prior import CodePrior, CodePriorConfig
    from ablate.runtime import (
        StepLoop,
        lr_factor,
        mean_over_workers,
        resolve_precision,
        restore_states,
        resume,
        start_worker,
        unwrap,
    )

    p = config["prior"]
    h, w = config["grid"]
    condition = config.get("condition")
    shape = CodePriorConfig(vocab=config["vocab"], n_positions=h * w, layers=p["layers"], heads=p["heads"],
                            width=p["width"], dropout=p["dropout"], pkeep=p["pkeep"],
                            n_conditions=0 if condition is None else len(condition["values"]))
    worker, model = start_worker(config, lambda: CodePrior(shape))
    rank, world, per_worker, device = worker.rank, worker.world, worker.per_worker, worker.device
    precision = resolve_precision(config["precision"], device.type)
    steps = config["steps"]
    opt = torch.optim.AdamW(model.parameters(), lr=config["lr"], betas=(0.9, 0.95), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, config["warmup_steps"]))
    step, epoch, last_loss = 0, 0, float("nan")
    restored = restore_states(device, PRIOR_FILE, PRIOR_STATE_FILE)
    if restored is not None:  # a restarted worker group, or a resumed grid: continue the same run
        saved, state = restored
        step, epoch = resume(model, opt, sched, saved, state)
        last_loss = float(saved.get("loss", "nan"))

    labelled = condition is not None
    train, train_labels = grids_of(ray.train.get_dataset_shard("train"), labelled)
    if len(train) < per_worker:
        raise ValueError(f"prior: this worker's share of the train codes ({len(train)} grids) is less than its "
                         f"batch ({per_worker}); lower prior.batch_size or use fewer workers")
    val_shard = ray.train.get_dataset_shard("val") if "val" in config["splits"] else None
    val, val_labels = (share_of(*grids_of(val_shard, labelled), rank, world) if val_shard is not None
                       else (np.zeros((0, h * w), np.int64), np.zeros(0, np.int64) if labelled else None))
    generator = torch.Generator(device=device).manual_seed(config["seed"] * 1000 + 7 + rank)  # pkeep draws

    def forward(batch, at: int):
        codes, labels = batch
        with precision.autocast():
            # Through the (DDP-)wrapped module's forward, so DDP sees the call it synchronises.
            logits = model(unwrap(model).corrupt(codes, generator), labels)
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, shape.vocab), codes.reshape(-1))
        return loss, {"prior/loss": loss.detach()}, codes.shape[0], None

    def val_loss() -> float:
        """Mean cross-entropy per code over the whole val split (every rank calls it: a
        collective, even with an empty shard)."""
        m = unwrap(model)
        was = m.training
        m.eval()  # no corruption, no dropout
        total, count = torch.zeros((), device=device), torch.zeros((), device=device)
        with torch.no_grad(), precision.autocast():
            for k in range(0, len(val), 64):
                x = torch.from_numpy(val[k:k + 64]).to(device)
                c = None if val_labels is None else torch.from_numpy(val_labels[k:k + 64]).to(device)
                total += torch.nn.functional.cross_entropy(m(x, c).float().flatten(0, 1), x.flatten(),
                                                           reduction="sum")
                count += x.numel()
        m.train(was)
        r = mean_over_workers({"sum": total, "n": count})  # both scaled by 1/world: the ratio is the mean
        return r["sum"] / r["n"] if r["n"] > 0 else float("nan")

    def report(at: int, at_epoch: int, last: dict, final: bool) -> None:
        _report(unwrap(model), opt, sched, shape, config, at, at_epoch, last.get("prior/loss", float("nan")),
                last.get("prior/val_loss", float("nan")), final)

    # Validation at every checkpoint (and the end), so each checkpoint carries its val loss.
    loop = StepLoop(steps, config["log_every"], max(1, steps), config["checkpoint_every"], world, "prior", rank,
                    config["tb_dir"], rate_key="perf/prior_grids_per_s", val_every=config["checkpoint_every"])
    loop.run(lambda e: batches(train, train_labels, per_worker, config["seed"], rank, e, device), forward, opt=opt, sched=sched,
             report=report, step=step, epoch=epoch, last={"prior/loss": last_loss},
             validate=(lambda: {"prior/val_loss": val_loss()}) if val_shard is not None else None)


def _report(model, opt, sched, shape, config: dict, step: int, epoch: int, loss: float, val_loss: float,
            final: bool) -> None:
    import torch

    from ablate.runtime import report_to_train

    def save(folder: Path) -> None:
        save_prior(folder, model, config["grid"], step=step, loss=loss, val_loss=val_loss, seed=config["seed"],
                   condition=config.get("condition"))
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step, "epoch": epoch},
                   folder / PRIOR_STATE_FILE)

    metrics = {"prior/loss": loss, "step": step, "epoch": epoch, "final": final}
    if not math.isnan(val_loss):
        metrics["prior/val_loss"] = val_loss
    report_to_train(metrics, save=save)
