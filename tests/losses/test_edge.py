"""The registered `edge` loss term (ablate.losses.edge): its contract on each filter family, finite gradients on flat regions, distances, the options each family reads, bad options refused at construction."""

from __future__ import annotations

import pytest
import torch

from ablate.edge_filters import CHANNELS, FAMILIES, edge_map, gaussian_blur
from ablate.losses import LOSSES

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- the registered `edge` term ----------------------------------------------------------


def _pair(seed: int = 0, size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # Smooth target (ridges at several scales) and a noisy reconstruction of it.
    x = gaussian_blur(torch.rand(2, 3, size, size, generator=g), 1.0).clamp(0, 1)
    x_hat = x + 0.05 * torch.randn(x.shape, generator=g)
    return x, x_hat


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_edge_term_contract(family):
    term = LOSSES.build("edge", family=family)
    assert term.rgb_only
    x, x_hat = _pair()
    x_hat.requires_grad_(True)
    value = term(x, x_hat)
    assert value.dim() == 0 and value.item() > 0
    value.backward()
    assert torch.isfinite(x_hat.grad).all() and x_hat.grad.abs().sum() > 0
    assert term(x, x.clone()).item() <= 1e-6
    with pytest.raises(ValueError, match="differ in shape"):
        term(x, x_hat[..., :-1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        term(x * 2, x_hat)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_edge_term_gradient_is_finite_on_flat_regions(family):
    # The black surround of a fundus photograph is exactly flat: sqrt(0) and 0/0 must not leak NaN.
    x, _ = _pair(1)
    x_hat = torch.zeros_like(x).requires_grad_(True)
    LOSSES.build("edge", family=family, distance="l2")(x, x_hat).backward()
    assert torch.isfinite(x_hat.grad).all()


def test_edge_term_distances():
    x, x_hat = _pair(2)
    diff = edge_map(x, "sobel") - edge_map(x_hat, "sobel")
    torch.testing.assert_close(LOSSES.build("edge", family="sobel", distance="l1")(x, x_hat), diff.abs().mean())
    torch.testing.assert_close(LOSSES.build("edge", family="sobel", distance="l2")(x, x_hat), diff.pow(2).mean())


def test_edge_term_passes_the_options_each_family_reads():
    x, x_hat = _pair(3)
    a = LOSSES.build("edge", family="meijering", sigmas=[1.0])(x, x_hat)
    b = LOSSES.build("edge", family="meijering", sigmas=[2.0])(x, x_hat)
    assert not torch.isclose(a, b)
    # sobel reads no option: a sigma given for a sweep over families changes nothing.
    s1 = LOSSES.build("edge", family="sobel", sigma=1.0)(x, x_hat)
    s2 = LOSSES.build("edge", family="sobel", sigma=3.0)(x, x_hat)
    assert torch.equal(s1, s2)
    l1 = LOSSES.build("edge", family="log", sigma=1.0)(x, x_hat)
    l3 = LOSSES.build("edge", family="log", sigma=3.0)(x, x_hat)
    assert not torch.isclose(l1, l3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"family": "roberts"}, "family must be one of"),
        ({"channel": "red"}, "channel must be one of"),
        ({"distance": "huber"}, "distance must be one of"),
        ({"sigma": 0}, "sigma must be a positive number"),
        ({"sigmas": []}, "sigmas must be a non-empty list"),
        ({"sigmas": [1.0, -2.0]}, r"sigmas\[1\] must be a positive number"),
        ({"black_ridges": "yes"}, "black_ridges must be true or false"),
    ],
)
@pytest.mark.bad_input
def test_edge_term_rejects_bad_options_at_construction(options, message):
    with pytest.raises(ValueError, match=message):
        LOSSES.build("edge", **options)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_edge_map_follows_dtype_and_channel_choice(family):
    x = torch.rand(2, 3, 24, 24, dtype=torch.float64)
    for channel in CHANNELS:
        out = edge_map(x, family, channel)
        assert out.dtype == torch.float64
        assert out.shape == (2, 3 if channel == "rgb" else 1, 24, 24)
