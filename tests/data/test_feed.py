"""Worker-side data path: decode once and reuse (feed.py), augmentation in torch (augment.py)."""

from __future__ import annotations

from itertools import chain

import numpy as np
import pytest
import torch

from ablate.data.augment import augment_batch
from ablate.data.feed import ShardFeed, cache_fits
from ablate.specs import AugmentSpec


class FakeShard:
    """Stands in for a Ray Train dataset shard: counts how often it is iterated."""

    def __init__(self, n: int, size: int = 8):
        self.images = torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 3, size, size).contiguous()
        self.keys = torch.arange(100, 100 + n, dtype=torch.int64)
        self.passes = 0

    def iter_torch_batches(self, batch_size, dtypes, device="auto"):
        assert dtypes == {"image": torch.uint8, "key": torch.int64}
        self.passes += 1
        # Ray's "auto" puts batches on a GPU Train worker's device; "meta" stands in for it here,
        # so a feed that leaves the device to Ray fails on the CPU as it did on the H200 (issue 30).
        where = "meta" if device == "auto" else device
        for s in range(0, len(self.keys), batch_size):
            yield {"image": self.images[s:s + batch_size].to(where), "key": self.keys[s:s + batch_size].to(where)}


def _keys(feed, epoch):
    return [k.tolist() for _, k in feed.epoch(epoch)]


def test_cached_feed_streams_once_and_reshuffles_every_epoch():
    shard = FakeShard(10)
    feed = ShardFeed(shard, 4, "cpu", cache=True, shuffle_seed=7)
    first = _keys(feed, 0)
    assert first == [[100, 101, 102, 103], [104, 105, 106, 107], [108, 109]]  # the stream's order and batches
    e1, e2 = _keys(feed, 1), _keys(feed, 2)
    assert shard.passes == 1 and feed.passes_streamed == 1
    assert [len(b) for b in e1] == [4, 4, 2]
    assert sorted(chain.from_iterable(e1)) == list(range(100, 110)) == sorted(chain.from_iterable(e2))
    assert e1 != e2  # a new order per epoch
    again = ShardFeed(FakeShard(10), 4, "cpu", cache=True, shuffle_seed=7)
    _keys(again, 0)
    assert _keys(again, 1) == e1  # seeded: the same trial gets the same order
    other_rank = ShardFeed(FakeShard(10), 4, "cpu", cache=True, shuffle_seed=7, rank=1)
    _keys(other_rank, 0)
    assert _keys(other_rank, 1) != e1
    # Images travel with their keys through the shuffle.
    for images, keys in feed.epoch(3):
        assert (images[:, 0, 0, 0].long() + 100).tolist() == keys.tolist()


def test_uncached_feed_streams_every_epoch():
    shard = FakeShard(10)
    feed = ShardFeed(shard, 4, "cpu", cache=False, shuffle_seed=7)
    assert _keys(feed, 0) == _keys(feed, 1)
    assert shard.passes == 2 and feed.passes_streamed == 2


@pytest.mark.fault
def test_partial_pass_is_not_kept():
    shard = FakeShard(10)
    feed = ShardFeed(shard, 4, "cpu", cache=True, shuffle_seed=0)
    for _ in feed.epoch(0):
        break  # a trial that ended inside its first epoch
    assert len(list(chain.from_iterable(_keys(feed, 1)))) == 10 and shard.passes == 2


def test_validation_subset_is_fixed_and_streamed_once():
    shard = FakeShard(10)
    feed = ShardFeed(shard, 3, "cpu", cache=True, max_batches=2)
    assert _keys(feed, 0) == [[100, 101, 102], [103, 104, 105]]
    assert _keys(feed, 0) == [[100, 101, 102], [103, 104, 105]]
    assert shard.passes == 1


def test_cache_fits_counts_one_workers_share():
    one = 3 * 256 * 256  # bytes of a decoded 256 px image
    assert cache_fits(100, 256, 1, limit_mb=100 * one / 2**20)
    assert not cache_fits(101, 256, 1, limit_mb=100 * one / 2**20)
    assert cache_fits(101, 256, 2, limit_mb=100 * one / 2**20)  # 51 each
    assert not cache_fits(1, 256, 1, limit_mb=0)  # 0 switches it off


# ---------------------------------------------------------------- augmentation


def _batch(n=6, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_augmentation_is_seeded_by_seed_rank_and_step():
    x = _batch()
    spec = AugmentSpec(hflip=True, vflip=True, rotate_deg=10)
    a = augment_batch(x, spec, seed=0, rank=0, step=5)
    assert torch.equal(a, augment_batch(x, spec, seed=0, rank=0, step=5))
    for other in ({"seed": 1, "rank": 0, "step": 5}, {"seed": 0, "rank": 1, "step": 5}, {"seed": 0, "rank": 0, "step": 6}):
        assert not torch.equal(a, augment_batch(x, spec, **other))
    assert augment_batch(x, None, seed=0, rank=0, step=5) is x


def test_flips_only_flip():
    x = _batch(n=32)
    out = augment_batch(x, AugmentSpec(hflip=True, vflip=False, rotate_deg=0), seed=3, rank=0, step=0)
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 4 < sum(flipped) < 28  # about half of 32, drawn per image


def test_rotation_turns_content_and_keeps_a_centred_disc():
    size = 64
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    r = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2).sqrt()
    disc = (r < 24).float().expand(4, 3, size, size)
    bar = torch.zeros(4, 3, size, size)
    bar[:, :, 30:34, 8:56] = 1.0  # a horizontal bar: any rotation moves it
    spec = AugmentSpec(hflip=False, vflip=False, rotate_deg=20)
    d = augment_batch(disc, spec, seed=0, rank=0, step=0)
    b = augment_batch(bar, spec, seed=0, rank=0, step=0)
    inner = r < 22  # away from the rim, where bilinear resampling blurs one pixel
    assert torch.allclose(d[:, :, inner], torch.ones(1), atol=1e-5)
    assert (d[:, :, r > 26] == 0).all()  # zero fill, no wrap-around
    assert b.sum(dim=(1, 2, 3)) == pytest.approx(bar.sum(dim=(1, 2, 3)), rel=0.05)  # turned, not lost
    # The bar's orientation (from its second moments) is the drawn angle, one sign for all.
    from ablate.data.augment import _generator

    drawn = ((torch.rand(4, 3, generator=_generator(0, 0, 0))[:, 2] * 2 - 1) * 20).numpy()
    w = b[:, 0].numpy()
    ys, xs = np.mgrid[0:size, 0:size]
    measured = []
    for img in w:
        m = img.sum()
        cy, cx = (img * ys).sum() / m, (img * xs).sum() / m
        mu20, mu02 = (img * (xs - cx) ** 2).sum(), (img * (ys - cy) ** 2).sum()
        mu11 = (img * (xs - cx) * (ys - cy)).sum()
        measured.append(np.degrees(0.5 * np.arctan2(2 * mu11, mu20 - mu02)))
    measured = np.array(measured)
    sign = np.sign(measured[np.argmax(np.abs(drawn))] * drawn[np.argmax(np.abs(drawn))])
    assert np.abs(measured - sign * drawn).max() < 1.0, (measured, drawn)


@pytest.mark.bad_input
def test_augmentation_rejects_other_shapes():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        augment_batch(torch.rand(3, 8, 8), AugmentSpec(), seed=0, rank=0, step=0)
    assert np.isfinite(augment_batch(torch.rand(0, 3, 8, 8), AugmentSpec(), seed=0, rank=0, step=0).numpy()).all()
