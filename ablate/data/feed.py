"""A Train worker's batches: its part of the Ray Data stream, decoded once.

The first pass over a split streams from Ray Data (Parquet read + PNG decode in
Ray Data tasks). With caching on, the worker keeps the decoded uint8 images of
that pass and serves every later pass from memory, reshuffled per epoch with a
seeded generator. Without it each epoch re-reads and re-decodes every PNG and
starts a new streaming execution (about 2.5 s on 2 cores even for a 2-image
validation split): measured in BENCHMARKS.md.

Whether to cache is decided once per trial by the driver (`cache_fits`), from
the manifest's counts, so all ranks agree and keep iterating in lock-step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

DTYPES = {"image": torch.uint8, "key": torch.int64}


def share_mb(rows: int, size: int, workers: int) -> float:
    """MiB of one worker's share of `rows` decoded (3, size, size) uint8 images."""
    return math.ceil(rows / workers) * 3 * size * size / 2**20


def cache_fits(rows: int, size: int, workers: int, limit_mb: float) -> bool:
    return limit_mb > 0 and share_mb(rows, size, workers) <= limit_mb


class ShardFeed:
    """Batches (uint8 (N, 3, S, S) on `device`, int64 keys on the CPU) of one dataset shard.

    `shuffle_seed` None keeps the stream's order on every pass (validation);
    otherwise cached passes use a fresh order per epoch, seeded by (seed, rank, epoch).
    `max_batches` ends every pass after that many batches (validation subsets).
    """

    def __init__(self, shard, batch_size: int, device: torch.device, *, cache: bool, rank: int = 0,
                 shuffle_seed: int | None = None, max_batches: int | None = None):
        self.shard, self.batch_size, self.device = shard, batch_size, torch.device(device)
        self.cache, self.rank, self.shuffle_seed, self.max_batches = cache, rank, shuffle_seed, max_batches
        self._cached: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.passes_streamed = 0  # how often Ray Data was iterated (tests and benchmarks read it)

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            return images.pin_memory().to(self.device, non_blocking=True)
        return images.to(self.device)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._cached is not None:
            yield from self._from_cache(epoch)
            return
        self.passes_streamed += 1
        kept: list[tuple[torch.Tensor, torch.Tensor]] = []
        # device="cpu": Ray's default ("auto") already moves batches to a GPU Train worker's device,
        # where they cannot be pinned (the first H200 run failed so, issue 30) and the decoded
        # cache would sit in GPU memory; the cache is host memory, copied over pinned per batch.
        batches = self.shard.iter_torch_batches(batch_size=self.batch_size, dtypes=DTYPES, device="cpu")
        for i, batch in enumerate(batches):
            images, keys = batch["image"], batch["key"]
            if self.cache:
                kept.append((images, keys))
            yield self._to_device(images), keys
            if self.max_batches is not None and i + 1 >= self.max_batches:
                break
        # Reached only when the pass ran to its end: a consumer that stops early
        # closes this generator at the yield, and a partial pass is not kept.
        if self.cache and kept:
            self._cached = kept

    def _from_cache(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cached = self._cached
        assert cached is not None  # called only once a whole pass was kept
        if self.shuffle_seed is None:
            for images, keys in cached:
                yield self._to_device(images), keys
            return
        images = torch.cat([b[0] for b in cached])
        keys = torch.cat([b[1] for b in cached])
        state = np.random.SeedSequence([self.shuffle_seed, self.rank, epoch]).generate_state(1)[0]
        order = torch.randperm(len(keys), generator=torch.Generator().manual_seed(int(state)))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            yield self._to_device(images[idx]), keys[idx]
