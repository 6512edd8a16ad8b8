"""The contract every registered loss term keeps (ablate.losses.base), written once and run on
each entry of the registry (ablate.losses.LOSSES): a term a search space may name builds from
its options, refuses an option it does not know naming the key, and (an image term) returns an
unweighted finite scalar with a finite gradient, refuses images of two shapes or outside
[0, 1] with a message that starts with its name; a distance is zero at identity. An aux term
passes the model's scalar through and refuses anything else.

A new term is checked here as soon as it registers: tests.helpers.loss_terms.TERM_OPTIONS must
give the options that build it offline (a missing entry fails every test below). Each term's
own properties (its formula, its references) stay in its module's test file."""

from __future__ import annotations

import typing

import pytest
import torch

from ablate.losses import LOSSES, CompositeLoss, LossSpec
from ablate.losses.base import AuxLoss, ImageLoss
from tests.helpers.loss_terms import SIZE, TERM_OPTIONS

pytestmark = pytest.mark.usefixtures("one_thread")

TERMS = sorted(entry.name for entry in LOSSES)
# The PatchGAN's generator term scores how real the reconstruction looks to a discriminator:
# not a distance between the two images, so not zero when they are equal.
NOT_A_DISTANCE = {"adversarial"}


def _build(name: str):
    torch.manual_seed(0)  # terms with networks of their own (a discriminator, a random trunk) build alike
    return LOSSES.build(name, **TERM_OPTIONS[name])


def _images(name: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    size = SIZE.get(name, 32)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, size, size, generator=g)
    return x, (x + 0.1 * torch.randn(x.shape, generator=g)).requires_grad_(True)


def _builds(name: str) -> type:
    """The class a term's factory declares it returns: read at collection without building the
    term (a feature network costs seconds); the first test checks the built term agrees."""
    return typing.get_type_hints(LOSSES.get(name).factory)["return"]


IMAGE_TERMS = [n for n in TERMS if issubclass(_builds(n), ImageLoss)]


def test_every_term_is_an_image_term_or_an_aux_term_and_has_options_to_test_it():
    for name in TERMS:
        assert name in TERM_OPTIONS, f"{name}: add the options that build it offline to tests/helpers/loss_terms.py"
        term = _build(name)
        assert isinstance(term, ImageLoss | AuxLoss) and isinstance(term, _builds(name)), name
    assert IMAGE_TERMS, "no image term registered"


@pytest.mark.parametrize("name", TERMS)
def test_term_is_described_in_the_registry(name):
    assert LOSSES.get(name).description.strip()


@pytest.mark.bad_input
@pytest.mark.parametrize("name", TERMS)
def test_unknown_option_is_refused_naming_the_term_and_the_key(name):
    with pytest.raises(ValueError, match=rf"losses\.{name}: unknown option\(s\) \['foo'\]"):
        CompositeLoss.from_specs([LossSpec(name=name, options={**TERM_OPTIONS[name], "foo": 1})])


@pytest.mark.parametrize("name", IMAGE_TERMS)
def test_image_term_is_a_finite_scalar_with_a_finite_gradient(name):
    term = _build(name)
    x, x_hat = _images(name)
    value = term(x, x_hat)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert x_hat.grad is not None and torch.isfinite(x_hat.grad).all() and x_hat.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(set(IMAGE_TERMS) - NOT_A_DISTANCE))
def test_distance_is_zero_at_identity_and_positive_otherwise(name):
    term = _build(name)
    x, x_hat = _images(name)
    with torch.no_grad():
        assert term(x, x.clone()).item() == pytest.approx(0.0, abs=1e-6)
        assert term(x, x_hat).item() > 0


@pytest.mark.bad_input
@pytest.mark.parametrize("name", IMAGE_TERMS)
def test_image_term_refuses_two_shapes_and_values_outside_the_unit_range_naming_itself(name):
    term = _build(name)
    x, x_hat = _images(name)
    half = x.shape[-2] // 2
    with pytest.raises(ValueError, match=rf"^{name}: .*differ in shape"):
        term(x, x_hat[:, :, :half])
    with pytest.raises(ValueError, match=rf"^{name}: values must lie in \[0, 1\]"):
        term(x * 255, x_hat.detach())


@pytest.mark.bad_input
@pytest.mark.parametrize("name", sorted(set(TERMS) - set(IMAGE_TERMS)))
def test_aux_term_passes_the_models_scalar_and_refuses_anything_else(name):
    term = _build(name)
    assert term(torch.tensor(2.5)).item() == 2.5
    with pytest.raises(ValueError, match="expected a scalar"):
        term(torch.ones(3))
