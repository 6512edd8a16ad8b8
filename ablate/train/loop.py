"""The per-worker training function run by Ray Train's TorchTrainer.

One call = one worker of one trial. Rank 0 writes TensorBoard and checkpoints;
every rank calls `ray.train.report` the same number of times (Train requires it).
Metrics are averaged over workers before reporting, since Tune sees rank 0's.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path

import torch
import torch.distributed as dist

from ablate.data.augment import augment_batch
from ablate.data.feed import ShardFeed
from ablate.losses import CompositeLoss
from ablate.models.checkpoint import read_checkpoint, usable_checkpoint, write_checkpoint
from ablate.models.edge_channel import EdgeChannel, input_and_target
from ablate.models.presets import build_for_spec
from ablate.runtime import (
    is_distributed,
    mean_over_workers,
    report_to_train,
    resolve_precision,
    restored_location,
    unwrap,
    worker_context,
)
from ablate.specs import ConfigError, TrialSpec
from ablate.train.step import train_step

logger = logging.getLogger(__name__)


def _sharding_check(seen: list[torch.Tensor]) -> dict:
    """Rows each worker read in epoch 0, how many any two workers shared (0 when every
    worker gets its own part of the stream), and the Ray node each worker ran on."""
    import ray

    mine = (torch.cat(seen).tolist() if seen else [], ray.get_runtime_context().get_node_id()[:12])
    if is_distributed():
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, mine)
    else:
        gathered = [mine]
    counts = [len(keys) for keys, _ in gathered]
    overlap = sum(counts) - len(set().union(*(set(keys) for keys, _ in gathered)))
    return {"data/rows_per_worker_epoch0": ",".join(map(str, counts)), "data/shared_rows_epoch0": overlap,
            "node/workers": ",".join(node for _, node in gathered)}


def _psnr(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    mse = (x[:, :3] - x_hat[:, :3].clamp(0, 1)).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean()


@torch.no_grad()
def validate(model, loss_fn, feed: ShardFeed, step, edge: EdgeChannel | None,
             autocast=contextlib.nullcontext) -> dict[str, torch.Tensor]:
    """`edge`: the trial's edge channel (or None); `autocast`: a factory of the context the
    forward passes run in (the trial's precision)."""
    model.eval()
    loss_fn.eval()  # discriminator BatchNorm must not learn validation statistics
    sums: dict[str, torch.Tensor] = {}
    n = 0
    for images, _ in feed.epoch(0):
        x_in, x = input_and_target(edge, images.float() / 255)
        with autocast():
            x_hat, aux = model(x_in)
            _, logs = loss_fn(x, x_hat, aux, step, None)
        logs["psnr"] = _psnr(x, x_hat.float())
        for k, v in logs.items():
            sums[k] = sums.get(k, 0) + v
        n += 1
    model.train()
    loss_fn.train()
    if n == 0:
        raise RuntimeError("validation split yielded no batch on this worker")
    return {f"val/{k}": v / n for k, v in sums.items()}


class WorkerRun:
    """One worker's share of one trial: model, optimisers, streams and bookkeeping.

    Built from the Train context and the trial spec; `run()` trains to the
    configured length. Every rank reports at the same steps (a Train requirement).
    """

    def __init__(self, config: dict):
        import ray.train
        import ray.train.torch

        self.config = config
        self.marks: dict[str, float] = {"worker_started": time.time()}  # start-up phases, see _base_metrics
        self.spec: TrialSpec = config["spec"]
        t = self.spec.train
        self.rank, self.world, self.per_worker = worker_context(config["threads"], t.batch_size)

        torch.manual_seed(self.spec.seed)  # same init on every rank; DDP broadcasts rank 0's anyway
        try:
            model, edge_channel = build_for_spec(self.spec)
        except ValueError as e:  # the spec cannot build a model: the same on every try, so not a fault
            raise ConfigError(f"trial {self.spec.combination}-s{self.spec.seed}: model: {e}") from e
        self.memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
        model = model.to(memory_format=self.memory_format)
        if t.compile:
            model.compile()  # lazily: the first step compiles (marks "compiled" below)
        self.edge = edge_channel  # None: RGB in and out; else the map as a 4th channel (in and/or out)
        self.model = ray.train.torch.prepare_model(model)
        self.device = ray.train.torch.get_device()
        if config.get("weights_manifest"):  # another node fetched the pretrained files: bring them here
            from ablate.weights.ship import receive

            receive(config["weights_manifest"])
        try:
            self.loss_fn = CompositeLoss.from_specs(self.spec.losses).to(self.device)
        except ValueError as e:  # a term refused its options: the same on every try (a missing file is not this)
            raise ConfigError(f"trial {self.spec.combination}-s{self.spec.seed}: losses: {e}") from e
        self.precision = resolve_precision(t.precision, self.device.type)
        if self.precision.note and self.rank == 0:
            logger.warning(f"[{self.spec.combination}] {self.precision.note}")
        self.scaler = self.precision.grad_scaler()  # fp16 only
        if self.scaler is not None:
            self.loss_fn.grad_scale = self.scaler.scale
        self.opt = torch.optim.Adam(self.model.parameters(), lr=t.lr, betas=t.betas)
        self.marks["model_ready"] = time.time()
        # Discriminators (adversarial terms) step with their own optimizer; same betas.
        adversaries = self.loss_fn.adversaries()
        self.d_opt = None
        if adversaries:
            self.d_opt = torch.optim.Adam(
                [{"params": a.module.parameters(), "lr": a.module.disc_lr or t.lr} for a in adversaries], betas=t.betas)

        self.step = self._restore()
        self.resumed_from = self.step
        self.epoch = 0
        self.first_step_at: float | None = None
        self.in_steps_s = 0.0
        self.data_check: dict = {}
        self.writer = None
        if self.rank == 0:
            from ablate.runtime import TrialWriter

            self.writer = TrialWriter(config["tb_dir"])
            if self.resumed_from:
                # A worker-group restart (or a resumed grid) continues from the checkpoint's step.
                self.writer.scalars({"train/resumed_from_step": self.resumed_from}, self.resumed_from)
        # Decoded once: the first pass streams from Ray Data, later ones come from memory
        # (the driver decided, for all ranks alike, whether the train split fits).
        self.train_feed = ShardFeed(ray.train.get_dataset_shard("train"), self.per_worker, self.device,
                                    cache=config["cache_train"], rank=self.rank, shuffle_seed=self.spec.seed)
        self.val_feed = ShardFeed(ray.train.get_dataset_shard("val"), self.per_worker, self.device, cache=True,
                                  rank=self.rank, max_batches=t.val_batches)

    def _restore(self) -> int:
        where = restored_location()
        if where is None:
            return 0
        # Verified before loading: a truncated latest checkpoint (a kill during its upload,
        # a full disk) falls back to the run's previous one, said in the trial's log.
        folder, notes = usable_checkpoint(where, self.spec.combination + f"-s{self.spec.seed}")
        if self.rank == 0:
            for n in notes:
                logger.warning(f"[{self.spec.combination}] {n}")
        if folder is None:
            logger.warning(f"[{self.spec.combination}] starting over from step 0: no checkpoint of this run verifies")
            return 0
        state = read_checkpoint(folder, str(self.device))
        unwrap(self.model).load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.d_opt is not None:
            self.loss_fn.load_trainable_state(state["loss_state"])
            self.d_opt.load_state_dict(state["disc_optimizer"])
        if self.scaler is not None and state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])  # fp16: the loss scale it had found
        return int(state["step"])

    # -- the loop --

    def run(self) -> None:
        t = self.spec.train
        total = t.steps if t.epochs is None else None
        try:
            if total is not None and self.step >= total:
                # Restored from the final checkpoint (a grid resumed right after this trial
                # ended): report its final state again and train no further.
                self.report(checkpoint=False, final=True)
                return
            while True:
                stopped = self._epoch(total)
                if stopped:
                    return
                self.epoch += 1
                if total is not None and self.step >= total:
                    return
                if t.epochs is not None and self.epoch >= t.epochs:
                    self.report(checkpoint=True, final=True)
                    return
        finally:
            if self.writer:
                self.writer.close()

    def _epoch(self, total: int | None) -> bool:
        """One pass over this worker's shard; True when the trial ended inside it."""
        t = self.spec.train
        seen_keys: list[torch.Tensor] = []  # image keys this worker got in the first epoch
        last_layer = unwrap(self.model).last_layer
        images_seen, tic, batches = 0, time.perf_counter(), 0
        for images, keys in self.train_feed.epoch(self.epoch):
            if "first_batch" not in self.marks:
                self.marks["first_batch"] = time.time()
            x = augment_batch(images.float() / 255, self.spec.data.augment, seed=self.spec.seed, rank=self.rank, step=self.step)
            x_in, x = (v.contiguous(memory_format=self.memory_format) for v in input_and_target(self.edge, x))
            if self.epoch == 0:
                seen_keys.append(keys)
            x_hat, aux, logs = self._train_step(x_in, last_layer, x)
            batches += 1
            images_seen += x.shape[0]
            done = total is not None and self.step >= total
            if self.step % t.log_every == 0 or done:
                for k in ("perplexity", "codes_used"):
                    if k in aux:
                        logs[f"vq/{k}"] = aux[k]
                scalars = mean_over_workers(logs)
                bad = {k: v for k, v in scalars.items() if not math.isfinite(v)}
                if bad:
                    self._stop_diverged(f"non-finite loss at step {self.step}: {bad}")
                    return True
                scalars["perf/images_per_s"] = images_seen * self.world / max(time.perf_counter() - tic, 1e-9)
                scalars["lr"] = self.opt.param_groups[0]["lr"]
                images_seen, tic = 0, time.perf_counter()
                if self.writer:
                    self.writer.scalars(scalars, self.step)
            if self.writer and (self.step % t.image_every == 0 or done):
                self.writer.reconstructions(x, x_hat, self.step)
            if self.step % t.val_every == 0 or self.step % t.checkpoint_every == 0 or done:
                self.report(checkpoint=self.step % t.checkpoint_every == 0 or done, final=done)
            if done:
                return True
        if batches == 0:
            raise RuntimeError(f"the train split gave worker {self.rank} no batch; "
                               f"it has fewer images than the {self.world} workers need")
        if self.epoch == 0:
            self.data_check = _sharding_check(seen_keys)
        return False

    def _train_step(self, x_in: torch.Tensor, last_layer: torch.Tensor, target: torch.Tensor):
        tic = time.perf_counter()
        x_hat, aux, logs = train_step(self.model, self.loss_fn, self.opt, self.d_opt, self.precision, self.scaler, x_in,
                                      self.step, last_layer, target=target)
        self.step += 1
        # Host time in training steps (on a GPU, queued kernels are waited for at the
        # next log's sync, so it lands in that step): the trial's wall time minus this
        # is what Ray, data and reporting cost.
        self.in_steps_s += time.perf_counter() - tic
        if self.first_step_at is None:
            self.first_step_s = time.perf_counter() - tic  # with train.compile: compiling included
            self.first_step_at = self.marks["first_step"] = time.time()
            if self.spec.train.compile:
                self.marks["compiled"] = self.first_step_at
        return x_hat, aux, logs

    # -- reporting --

    def _base_metrics(self, final: bool) -> dict:
        m = {**self.data_check, "step": self.step, "epoch": self.epoch, "final": final, "stop_reason": "",
             "world_size": self.world, "resumed_from_step": self.resumed_from,
             "train/torch_threads": torch.get_num_threads(), "time/in_steps_s": self.in_steps_s,
             "train/precision_used": self.precision.name,
             # Times this worker iterated Ray Data; 1 each when the decoded images were kept.
             "data/train_passes_streamed": self.train_feed.passes_streamed,
             "data/val_passes_streamed": self.val_feed.passes_streamed}
        if self.first_step_at is not None:
            m["time/startup_s"] = self.first_step_at - self.config["trial_started_at"]
            m["time/first_step_s"] = self.first_step_s
            # Where start-up goes: each phase as seconds after the trial driver began.
            marks = {**self.config.get("driver_marks", {}), **self.marks}
            for phase, at in marks.items():
                m[f"time/startup/{phase}_s"] = at - self.config["trial_started_at"]
        return m

    def _stop_diverged(self, reason: str) -> None:
        """Every rank sees the same all-reduced values, so all stop together. Not an
        exception: a restart from the checkpoint would only diverge again."""
        report_to_train({**self._base_metrics(final=True), "stop_reason": reason})

    def report(self, checkpoint: bool, final: bool) -> None:
        val = mean_over_workers(validate(self.model, self.loss_fn, self.val_feed, self.step, self.edge,
                                               self.precision.autocast))
        if self.writer:
            self.writer.scalars(val, self.step)
        report_to_train({**val, **self._base_metrics(final)}, save=self._save if checkpoint else None)

    def _save(self, folder: Path) -> None:
        adversarial = self.d_opt is not None
        write_checkpoint(folder, model_state=unwrap(self.model).state_dict(), optimizer_state=self.opt.state_dict(),
                         step=self.step, spec=self.spec,
                         loss_state=self.loss_fn.trainable_state() if adversarial else None,
                         disc_optimizer_state=self.d_opt.state_dict() if self.d_opt is not None else None,
                         grad_scaler_state=self.scaler.state_dict() if self.scaler is not None else None)


def train_loop_per_worker(config: dict) -> None:
    """Entry point Ray Train runs on each worker. A configuration error is reported, not raised:
    Ray Train would restart the workers `max_failures` times to fail the same way (config_errors.py)."""
    import ray.train

    from ablate.runtime.config_errors import without_retry

    without_retry(lambda: WorkerRun(config).run(), ray.train.report, where="worker")
