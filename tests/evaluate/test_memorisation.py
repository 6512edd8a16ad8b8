"""The memorisation check (ablate.evaluate.memorisation): copies of train images are flagged,
samples distributed like the test set are not (and the flag's false-positive rate holds over
many draws), the threshold is the stated order statistic, the closest pairs are right."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import betabinom

from ablate.errors import InvalidInput
from ablate.evaluate import memorisation as mem
from ablate.evaluate.memorisation import memorisation, nearest

D = 16


def world(rng: np.random.Generator, n_train: int = 60, n_test: int = 20, n_samples: int = 100):
    """Train, test and fresh samples drawn from one distribution (a Gaussian in D dimensions)."""
    return rng.normal(size=(n_train, D)), rng.normal(size=(n_test, D)), rng.normal(size=(n_samples, D))


def test_copies_of_train_images_are_flagged():
    rng = np.random.default_rng(0)
    train, test, _ = world(rng)
    copies = train[rng.integers(0, len(train), 100)] + 1e-3 * rng.normal(size=(100, D))
    m = memorisation(copies, train, test)
    assert m.memorising and m.share == 1.0 and m.p_value < 1e-6
    assert all(p.distance < 0.01 for p in m.closest)
    # a quarter copies among fresh samples: flagged at 20 test images whatever the draw (module docstring)
    fresh = rng.normal(size=(75, D))
    m = memorisation(np.concatenate([fresh, copies[:25]]), train, test)
    assert m.memorising and m.share >= 0.25
    assert {p.sample for p in m.closest} <= set(range(75, 100))  # the 8 closest are copies


def test_samples_drawn_like_the_test_set_are_not_flagged():
    rng = np.random.default_rng(1)
    train, test, fresh = world(rng)
    m = memorisation(fresh, train, test)
    assert not m.memorising and m.share < 2 * m.expected_share and m.p_value > 0.01


def test_false_positive_rate_and_expected_share_over_many_draws():
    """Under the null the flag fires in at most ALPHA of draws and the share averages j / (n + 1)."""
    rng = np.random.default_rng(2)
    shares, flags, small_p = [], 0, 0
    draws = 300
    for _ in range(draws):
        train, test, fresh = world(rng, n_train=30, n_test=20, n_samples=40)
        m = memorisation(fresh, train, test)
        shares.append(m.share)
        flags += m.memorising
        small_p += m.p_value <= 0.1
    assert m.expected_share == pytest.approx(1 / 21)
    assert np.mean(shares) == pytest.approx(1 / 21, abs=0.015)  # SE of the mean ~0.003
    assert flags <= 0.02 * draws  # ALPHA = 1 %, with room for the draw
    assert small_p <= 0.15 * draws  # p is a valid p-value: P(p <= 0.1) <= 0.1 (+ draw)


def test_a_generator_pulled_towards_the_train_set_is_flagged_at_large_n_only_by_a_multiple():
    """A slight pull (share a little above 5 %) is significant at large n but not twice the chance share."""
    rng = np.random.default_rng(13)
    train, test, fresh = world(rng, n_train=200, n_test=400, n_samples=2000)
    nn = train[nearest(fresh, train)[1]]
    pulled = fresh + 0.04 * (nn - fresh)  # 4 % of the way to the nearest train image: share 0.092, p 0.0014
    m = memorisation(pulled, train, test)
    assert m.p_value < 0.01 and m.expected_share < m.share < 2 * m.expected_share and not m.memorising


def test_threshold_is_the_stated_order_statistic():
    rng = np.random.default_rng(4)
    for n_test, j in ((20, 1), (19, 1), (100, 5), (59, 3)):
        train, test, fresh = world(rng, n_test=n_test)
        d_test = cdist(test, train).min(axis=1)
        m = memorisation(fresh, train, test)
        assert m.threshold == pytest.approx(np.sort(d_test)[j - 1], rel=1e-9), n_test
        assert m.expected_share == pytest.approx(j / (n_test + 1))
        count = int((cdist(fresh, train).min(axis=1) < m.threshold).sum())
        assert m.share == count / len(fresh)
        assert m.p_value == pytest.approx(betabinom.sf(count - 1, len(fresh), j, n_test + 1 - j), rel=1e-9)
        assert (m.n_samples, m.n_test, m.n_train) == (100, n_test, 60)


@pytest.mark.parametrize("block_bytes", [mem.BLOCK_BYTES, 8 * D * 7])  # one block; blocks of 7 rows
def test_nearest_and_closest_pairs_agree_with_cdist(monkeypatch, block_bytes):
    monkeypatch.setattr(mem, "BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(5)
    train, test, fresh = world(rng, n_train=50, n_test=20, n_samples=30)
    full = cdist(fresh, train)
    dist, idx = nearest(fresh, train)
    assert (dist == full.min(axis=1)).all() and (idx == full.argmin(axis=1)).all()
    m = memorisation(fresh, train, test)
    order = np.argsort(full.min(axis=1))[:8]
    assert [p.sample for p in m.closest] == order.tolist()
    assert [p.train for p in m.closest] == full.argmin(axis=1)[order].tolist()
    assert [p.distance for p in m.closest] == full.min(axis=1)[order].tolist()
    assert len(memorisation(fresh[:3], train, test).closest) == 3


def test_a_copy_reads_distance_zero():
    """Exact distances: the Gram form |x|^2 + |t|^2 - 2 x.t reads 6e-5 for one of these copies
    (|x|^2 ~ 1.6e7 cancels to a rounding error)."""
    rng = np.random.default_rng(5)
    train = rng.normal(size=(50, D)) + 1000
    dist, idx = nearest(train[[3, 7]], train)
    assert dist.tolist() == [0.0, 0.0] and idx.tolist() == [3, 7]


def test_float32_pixels_stay_float32_and_agree():
    rng = np.random.default_rng(6)
    train, test, fresh = (a.astype(np.float32) for a in world(rng))
    m32, m64 = memorisation(fresh, train, test), memorisation(fresh.astype(float), train.astype(float),
                                                               test.astype(float))
    assert m32.share == m64.share and m32.threshold == pytest.approx(m64.threshold, rel=1e-6)


@pytest.mark.bad_input
def test_bad_inputs_are_refused():
    rng = np.random.default_rng(7)
    train, test, fresh = world(rng)
    leaky = test.copy()
    leaky[[2, 5]] = train[[10, 11]]
    with pytest.raises(InvalidInput, match=r"test image\(s\) \[2, 5\] equal train image\(s\) \[10, 11\]"):
        memorisation(fresh, train, leaky)
    with pytest.raises(InvalidInput, match="have 16, 15 and 16 values per row"):
        memorisation(fresh, train[:, :15], test)
    bad = fresh.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="samples contains NaN or inf"):
        memorisation(bad, train, test)
    with pytest.raises(ValueError, match="train contains NaN or inf"):
        memorisation(fresh, np.where(train > 2, np.inf, train).astype(np.float32), test)
    with pytest.raises(InvalidInput, match=r"expected a non-empty \(n, d\) array"):
        memorisation(fresh, train, test[0])
