"""The composite loss (ablate.losses.composite): every configured number acts (weight,
start_step, adaptive) on every registered term, and a term's doubled weight doubles its part.

TERM_OPTIONS (tests/helpers/loss_terms.py) must name every registered term: a new term without
an entry fails `test_every_term_is_covered`. The properties every term shares are checked once
for all of them in test_term_contract.py."""

from __future__ import annotations

import pytest
import torch

from ablate.losses import LOSSES, CompositeLoss, LossSpec
from ablate.models import build_model
from tests.helpers.loss_terms import CHANNELS, SIZE, TERM_OPTIONS


def test_every_term_is_covered():
    assert {e.name for e in LOSSES} == set(TERM_OPTIONS)


def _images(size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, size, size, generator=g)
    return x, (x + 0.1 * torch.randn(x.shape, generator=g)).requires_grad_(True)


def _composite(**specs):
    return CompositeLoss.from_specs([LossSpec(name=n, **kw) for n, kw in specs.items()])


@pytest.mark.parametrize("name", sorted(TERM_OPTIONS))
def test_doubling_a_weight_doubles_its_contribution(name):
    torch.manual_seed(0)
    size, channels = SIZE.get(name, 32), CHANNELS.get(name, 3)
    model = build_model("tiny", size, in_channels=channels)
    x = torch.rand(2, channels, size, size)
    x_hat, aux = model(x)
    totals = []
    for w in (0.7, 1.4):
        torch.manual_seed(1)  # terms with networks of their own (a discriminator) build identically
        loss = _composite(**{name: {"weight": w, "options": TERM_OPTIONS[name]}})
        total, _logs = loss(x, x_hat, aux, step=0, last_layer=model.last_layer)
        totals.append(total)
        assert total.dim() == 0
    assert totals[0].item() != 0  # (the hinge generator term may be negative)
    assert totals[1].item() == pytest.approx(2 * totals[0].item(), rel=1e-5)


def test_total_is_the_weighted_sum_and_logs_are_tags():
    x, x_hat = _images()
    loss = _composite(l1={"weight": 0.3}, l2={"weight": 2.0})
    total, logs = loss(x, x_hat, {"codebook": torch.tensor(0.0)}, step=0)
    l1, l2 = (x - x_hat).abs().mean(), (x - x_hat).pow(2).mean()
    assert total.item() == pytest.approx((0.3 * l1 + 2.0 * l2).item(), rel=1e-6)
    assert set(logs) == {"loss/l1", "loss/l2", "loss/total"}
    assert logs["loss/l1"].item() == pytest.approx(l1.item())  # logged unweighted


def test_start_step_switches_a_term_on():
    x, x_hat = _images()
    loss = _composite(l1={"weight": 1.0}, l2={"weight": 5.0, "start_step": 10})
    before, logs = loss(x, x_hat, {}, step=9)
    after, _ = loss(x, x_hat, {}, step=10)
    l1, l2 = (x - x_hat).abs().mean(), (x - x_hat).pow(2).mean()
    assert before.item() == pytest.approx(l1.item(), rel=1e-6)
    assert after.item() == pytest.approx((l1 + 5 * l2).item(), rel=1e-6)
    assert "loss/l2" in logs  # still logged while off, so its curve is continuous


def test_adaptive_weight_is_taming_gradient_ratio():
    torch.manual_seed(0)
    model = build_model("tiny", 32)
    x = torch.rand(2, 3, 32, 32)
    x_hat, aux = model(x)
    loss = _composite(l1={"weight": 1.0}, l2={"weight": 0.5, "adaptive": True})
    total, logs = loss(x, x_hat, aux, step=0, last_layer=model.last_layer)
    l1, l2 = (x - x_hat).abs().mean(), (x - x_hat).pow(2).mean()
    g1 = torch.autograd.grad(l1, model.last_layer, retain_graph=True)[0]
    g2 = torch.autograd.grad(l2, model.last_layer, retain_graph=True)[0]
    lam = (g1.norm() / (g2.norm() + 1e-4)).clamp(0, 1e4)
    assert logs["adaptive/l2"].item() == pytest.approx(lam.item(), rel=1e-5)
    assert total.item() == pytest.approx((l1 + 0.5 * lam * l2).item(), rel=1e-5)
    # The balance is a constant: gradients flow through the term, not the ratio.
    assert not logs["adaptive/l2"].requires_grad


def test_adaptive_term_in_validation_counts_at_its_plain_weight():
    """Validation runs without gradients and passes no decoder layer: an active adaptive term
    (the PatchGAN's, once past its start step) must count at its plain weight, not fail the trial
    (it did: the first validation after the adversarial start stopped every trial)."""
    torch.manual_seed(0)
    model = build_model("tiny", 32)
    x = torch.rand(2, 3, 32, 32)
    loss = _composite(l1={"weight": 1.0}, l2={"weight": 0.5, "adaptive": True})
    with torch.no_grad():
        x_hat, aux = model(x)
        total, logs = loss(x, x_hat, aux, step=10, last_layer=None)
    l1, l2 = (x - x_hat).abs().mean(), (x - x_hat).pow(2).mean()
    assert logs["adaptive/l2"].item() == 1.0
    assert total.item() == pytest.approx((l1 + 0.5 * l2).item(), rel=1e-5)
    with pytest.raises(ValueError, match="no decoder last layer"):  # in training it is still required
        x_hat, aux = model(x)
        loss(x, x_hat, aux, step=10, last_layer=None)


def test_adaptive_needs_a_reference_term():
    x, x_hat = _images()
    loss = _composite(l2={"weight": 1.0, "adaptive": True})
    with pytest.raises(ValueError, match="no non-adaptive image term"):
        loss(x, x_hat, {}, step=0, last_layer=torch.zeros(1, requires_grad=True))


def test_codebook_reads_the_models_aux():
    x, x_hat = _images()
    loss = _composite(l1={"weight": 1.0}, codebook={"weight": 0.25})
    total, logs = loss(x, x_hat, {"codebook": torch.tensor(2.0)}, step=0)
    assert logs["loss/codebook"].item() == 2.0
    assert total.item() == pytest.approx((x - x_hat).abs().mean().item() + 0.5, rel=1e-6)
    with pytest.raises(ValueError, match="reads 'codebook', which the model did not return"):
        loss(x, x_hat, {}, step=0)


@pytest.mark.parametrize("name", ["l1", "l2"])
def test_pixel_term_properties(name):
    term = LOSSES.build(name)
    x, x_hat = _images()
    v = term(x, x_hat)
    assert v.dim() == 0 and v.item() > 0
    assert term(x, x.clone()).item() == 0.0
    v.backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="differ in shape"):
        term(x, x_hat[:, :, :16])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        term(x * 255, x_hat)


@pytest.mark.bad_input
def test_codebook_term_rejects_non_scalars():
    with pytest.raises(ValueError, match="expected a scalar"):
        LOSSES.build("codebook")(torch.ones(3))


@pytest.mark.bad_input
def test_unknown_option_names_the_key():
    with pytest.raises(ValueError, match=r"losses\.l1: unknown option\(s\) \['foo'\]"):
        CompositeLoss.from_specs([LossSpec(name="l1", options={"foo": 1})])
