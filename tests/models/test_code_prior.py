"""The prior over code grids (ablate.models.code_prior): causal logits, pkeep corruption in
training only, sampling with the KV cache equal to recomputing the prefix, temperature and
top-k as distributions, overfitting a few grids, and arguments refused by name."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ablate.errors import InvalidInput
from ablate.models.code_prior import CodePrior, CodePriorConfig
from ablate.models.code_sampling import pick_next
from ablate.models.kv_cache import KVCache

TINY = CodePriorConfig(vocab=16, n_positions=12, n_conditions=0, layers=2, heads=2, width=32, dropout=0.0, pkeep=1.0)


def tiny(sharp: bool = True, **changes) -> CodePrior:
    """A tiny prior; `sharp` redraws its weights wide, so its next-code distributions are far
    from uniform and a wrong logit changes which code is drawn (taming's N(0, 0.02) start
    gives near-uniform logits, where a broken cache could still draw the same codes)."""
    torch.manual_seed(0)
    model = CodePrior(dataclasses.replace(TINY, **changes))
    if sharp:
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.5)
    return model.eval()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_defaults_are_the_authors_settings():
    c = CodePriorConfig()
    assert (c.layers, c.heads, c.width, c.vocab, c.pkeep, c.dropout) == (12, 8, 512, 512, 0.9, 0.0)
    assert c.n_positions + 1 == 1025  # taming's block_size: the 32x32 grid and one start token


@pytest.mark.parametrize(("n_conditions", "top_k", "temperature"),
                         [(0, None, 1.0), (0, 5, 0.7), (3, None, 1.5), (3, 4, 1.0)])
def test_kv_cache_draws_exactly_the_codes_of_recomputing_the_prefix(n_conditions, top_k, temperature):
    model = tiny(n_conditions=n_conditions)
    condition = torch.tensor([0, 1, 2, 1, 0]) if n_conditions else None
    cached = model.sample(5, condition, top_k=top_k, temperature=temperature, generator=gen(1))
    full = model.sample(5, condition, top_k=top_k, temperature=temperature, generator=gen(1), use_cache=False)
    assert cached.shape == (5, TINY.n_positions) and cached.dtype == torch.long
    assert torch.equal(cached, full)
    assert len(cached.unique()) > 3  # the draws vary, so equality says something
    assert not torch.equal(cached, model.sample(5, condition, top_k=top_k, temperature=temperature, generator=gen(2)))


def test_cached_steps_give_the_logits_of_the_full_forward():
    """Feeding one token at a time through the cache reproduces forward's logits at every position."""
    model = tiny(n_conditions=2)
    codes = torch.randint(TINY.vocab, (3, TINY.n_positions), generator=gen(0))
    condition = torch.tensor([1, 0, 1])
    start = model._start(condition, 3, codes.device)
    cache = KVCache(TINY.layers, 3, TINY.heads, TINY.n_positions, TINY.width // TINY.heads, like=start)
    stepped = [model._run(start, 0, cache)]
    stepped += [model._run(model.tok_emb(codes[:, t - 1:t]), t, cache) for t in range(1, TINY.n_positions)]
    with torch.no_grad():
        assert torch.allclose(torch.cat(stepped, dim=1), model(codes, condition), atol=1e-5)


def test_cache_refuses_overflow_and_several_tokens_after_stored_ones():
    cache = KVCache(1, 1, 1, 2, 4, like=torch.zeros(()))
    k = torch.zeros(1, 1, 2, 4)
    cache.append(0, k, k)
    cache.advance(2)
    with pytest.raises(ValueError, match="full"):
        cache.append(0, k[:, :, :1], k[:, :, :1])
    model = tiny()
    cache = KVCache(TINY.layers, 1, TINY.heads, TINY.n_positions, TINY.width // TINY.heads, like=torch.zeros(()))
    model._run(torch.zeros(1, 1, TINY.width), 0, cache)
    with pytest.raises(ValueError, match="one new token per step"):
        model._run(torch.zeros(1, 2, TINY.width), 1, cache)


def test_logits_are_causal():
    """Changing code t leaves the logits at positions 0..t (which predict codes 0..t) alone
    and changes the ones after."""
    model = tiny()
    codes = torch.randint(TINY.vocab, (2, TINY.n_positions), generator=gen(3))
    with torch.no_grad():
        base = model(codes)
        for t in (0, 5, TINY.n_positions - 2):
            changed = codes.clone()
            changed[:, t] = (codes[:, t] + 1) % TINY.vocab
            out = model(changed)
            assert torch.equal(out[:, :t + 1], base[:, :t + 1]), t
            assert not torch.allclose(out[:, t + 1:], base[:, t + 1:]), t
        last = codes.clone()
        last[:, -1] = (codes[:, -1] + 1) % TINY.vocab
        assert torch.equal(model(last), base)  # the last code is never an input


def test_pkeep_one_never_corrupts():
    model = tiny(pkeep=1.0).train()
    codes = torch.randint(TINY.vocab, (50, TINY.n_positions), generator=gen(4))
    assert torch.equal(model.corrupt(codes, gen(0)), codes)
    assert model.loss(codes, generator=gen(0)).item() == model.eval().loss(codes).item()


def test_pkeep_replaces_about_one_minus_pkeep_of_codes_uniformly_in_training_only():
    vocab, pkeep = 10, 0.7
    model = tiny(vocab=vocab, n_positions=1000, pkeep=pkeep)
    codes = torch.zeros(200, 1000, dtype=torch.long)
    assert torch.equal(model.eval().corrupt(codes, gen(5)), codes)
    out = model.train().corrupt(codes, gen(5))
    # a replacement is uniform over the codebook, so 1 in vocab of them draws the same code back
    assert (out != codes).float().mean().item() == pytest.approx((1 - pkeep) * (1 - 1 / vocab), abs=0.005)
    share = torch.bincount(out.flatten(), minlength=vocab)[1:].float() / out.numel()
    assert torch.allclose(share, torch.full_like(share, (1 - pkeep) / vocab), atol=0.003)


def test_loss_predicts_the_true_codes_from_corrupted_inputs_in_training():
    model = tiny(pkeep=0.5)
    codes = torch.randint(TINY.vocab, (8, TINY.n_positions), generator=gen(6))
    clean = model.eval().loss(codes, generator=gen(7)).item()
    model.train()
    noisy = model.loss(codes, generator=gen(7))
    by_hand = torch.nn.functional.cross_entropy(model(model.corrupt(codes, gen(7))).flatten(0, 1), codes.flatten())
    assert noisy.item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert noisy.item() != pytest.approx(clean, rel=1e-3)


def _fit(model: CodePrior, grids: torch.Tensor, condition, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model.loss(grids, condition)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval().loss(grids, condition).item()


GRIDS = torch.randint(TINY.vocab, (4, TINY.n_positions), generator=gen(8))
GRIDS[:, 0] = torch.tensor([0, 1, 2, 3])  # distinct first codes: an unconditional prior can tell them apart


def test_a_conditional_prior_overfits_four_grids_and_greedy_sampling_returns_them():
    model = tiny(sharp=False, n_conditions=4)
    labels = torch.arange(4)
    assert model.loss(GRIDS, labels).item() > 2.0  # about log(16) untrained
    assert _fit(model, GRIDS, labels, 120) < 0.01
    assert torch.equal(model.sample(4, labels, top_k=1), GRIDS)
    # drawn rather than greedy (temperature 0.5 squares the small leftover mass away): the same grids
    assert torch.equal(model.sample(4, labels, temperature=0.5, generator=gen(9)), GRIDS)


def test_an_unconditional_prior_learns_the_mixture_of_four_grids():
    """Only the first code is uncertain (1 of 4): the loss floor is log(4) / n_positions, and
    every draw is one of the grids (temperature 0.5 keeps the four equal first codes equally
    likely and squares the leftover mass of wrong codes away)."""
    model = tiny(sharp=False)
    floor = math.log(4) / TINY.n_positions
    assert _fit(model, GRIDS, None, 120) == pytest.approx(floor, abs=0.005)
    drawn = model.sample(64, temperature=0.5, generator=gen(10))
    matches = (drawn[:, None] == GRIDS[None]).all(-1)  # (64, 4)
    assert matches.any(1).all()
    assert (matches.sum(0) > 5).all()  # each of the four comes up


def test_top_k_one_is_greedy_and_deterministic():
    model = tiny(n_conditions=3)
    condition = torch.tensor([0, 1, 2, 2])
    a = model.sample(4, condition, top_k=1, generator=gen(11))
    assert torch.equal(a, model.sample(4, condition, top_k=1, generator=gen(12)))
    with torch.no_grad():
        assert torch.equal(model(a, condition).argmax(-1), a)  # each code the most likely given its prefix
    # a vanishing temperature is greedy too
    assert torch.equal(model.sample(4, condition, temperature=1e-6, generator=gen(13)), a)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_scales_the_logits_before_the_softmax(temperature):
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]]).expand(40_000, 4)
    freq = torch.bincount(pick_next(logits, None, temperature, gen(14)), minlength=4).float() / 40_000
    assert torch.allclose(freq, torch.softmax(logits[0] / temperature, -1), atol=0.01)


def test_top_k_keeps_the_k_most_likely_codes_renormalised():
    logits = torch.tensor([[0.5, 3.0, -1.0, 2.0, 1.0]]).expand(40_000, 5)
    freq = torch.bincount(pick_next(logits, 2, 1.0, gen(15)), minlength=5).float() / 40_000
    expected = torch.zeros(5)
    expected[[1, 3]] = torch.softmax(torch.tensor([3.0, 2.0]), -1)
    assert torch.allclose(freq, expected, atol=0.01)


def test_sampling_runs_in_eval_mode_and_restores_training_mode():
    model = tiny(dropout=0.5).train()
    a = model.sample(3, generator=gen(16))
    assert model.training
    assert torch.equal(a, model.sample(3, generator=gen(16), use_cache=False))  # no dropout in either


CONDITIONAL = {"n_conditions": 3}
GOOD = torch.zeros(2, TINY.n_positions, dtype=torch.long)


@pytest.mark.parametrize(("changes", "call", "argument"), [
    ({}, lambda m: m(GOOD + TINY.vocab), "codes"),
    ({}, lambda m: m(GOOD - 1), "codes"),
    ({}, lambda m: m(GOOD[:, :-1]), "codes"),
    ({}, lambda m: m(GOOD[0]), "codes"),
    ({}, lambda m: m(GOOD.float()), "codes"),
    ({}, lambda m: m.loss(GOOD + TINY.vocab), "codes"),
    ({}, lambda m: m(GOOD, torch.tensor([0, 0])), "condition"),
    (CONDITIONAL, lambda m: m(GOOD), "condition"),
    (CONDITIONAL, lambda m: m(GOOD, torch.tensor([0, 3])), "condition"),
    (CONDITIONAL, lambda m: m(GOOD, torch.tensor([-1, 0])), "condition"),
    (CONDITIONAL, lambda m: m(GOOD, torch.tensor([0])), "condition"),
    (CONDITIONAL, lambda m: m(GOOD, torch.tensor([0.0, 1.0])), "condition"),
    (CONDITIONAL, lambda m: m.sample(2, 3), "condition"),
    ({}, lambda m: m.sample(0), "n"),
    ({}, lambda m: m.sample(2, top_k=0), "top_k"),
    ({}, lambda m: m.sample(2, top_k=TINY.vocab + 1), "top_k"),
    ({}, lambda m: m.sample(2, temperature=0.0), "temperature"),
    ({}, lambda m: m.sample(2, temperature=-1.0), "temperature"),
    ({}, lambda m: m.sample(2, temperature=float("nan")), "temperature"),
])
def test_bad_inputs_are_refused_naming_the_argument(changes, call, argument):
    with pytest.raises(InvalidInput, match=rf"^{argument}: "):
        call(tiny(sharp=False, **changes))


@pytest.mark.parametrize(("changes", "field"), [
    ({"heads": 3}, "width"), ({"pkeep": 0.0}, "pkeep"), ({"pkeep": 1.5}, "pkeep"), ({"dropout": 1.0}, "dropout"),
    ({"vocab": 1}, "vocab"), ({"n_conditions": -1}, "n_conditions"), ({"layers": 0}, "layers"),
])
def test_bad_configs_are_refused_naming_the_field(changes, field):
    with pytest.raises(InvalidInput, match=rf"^{field}: "):
        dataclasses.replace(TINY, **changes)
