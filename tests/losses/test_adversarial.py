"""PatchGAN discriminator and the hinge adversarial term."""

from __future__ import annotations

import pytest
import torch

from ablate.losses import LOSSES, CompositeLoss, LossSpec
from ablate.models.discriminator import NLayerDiscriminator


def test_patchgan_layout_matches_pix2pix():
    d = NLayerDiscriminator(3, 64, 3)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert d(torch.rand(1, 3, 256, 256)).shape == (1, 1, 30, 30)  # 70x70 patches on 256 px


def _pair(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 32, 32, generator=g)
    return x, (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1).requires_grad_(True)


def test_generator_loss_reaches_reconstruction_not_discriminator():
    term = LOSSES.build("adversarial", filters=8)
    x, x_hat = _pair()
    loss = term(x, x_hat)
    assert loss.dim() == 0
    loss.backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    assert all(p.grad is None for p in term.discriminator.parameters())
    assert all(p.requires_grad for p in term.discriminator.parameters())


def test_hinge_discriminator_loss_formula():
    term = LOSSES.build("adversarial", filters=8)
    x, x_hat = _pair()
    loss, _logs = term.discriminator_loss(x, x_hat)
    real = term.discriminator(x * 2 - 1)
    fake = term.discriminator(x_hat.detach() * 2 - 1)
    expected = 0.5 * (torch.relu(1 - real).mean() + torch.relu(1 + fake).mean())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss.item() >= 0


def test_discriminator_learns_to_separate_real_from_fake():
    torch.manual_seed(0)
    term = LOSSES.build("adversarial", filters=8)
    opt = torch.optim.Adam(term.parameters(), lr=2e-3)
    x = torch.rand(4, 3, 32, 32) * 0.5
    fake = torch.rand(4, 3, 32, 32) * 0.5 + 0.5
    first = None
    for _ in range(30):
        loss, _ = term.discriminator_loss(x, fake)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    assert (term.discriminator(x * 2 - 1).mean() > term.discriminator(fake * 2 - 1).mean()).item()


def test_discriminator_is_off_before_start_step():
    loss = CompositeLoss.from_specs([LossSpec("l1"), LossSpec("adversarial", weight=0.5, start_step=5,
                                                              options={"filters": 8})])
    x, x_hat = _pair()
    assert loss.discriminator_loss(x, x_hat, step=4)[0] is None
    d_loss, logs = loss.discriminator_loss(x, x_hat, step=5)
    assert d_loss is not None and {"disc/loss", "disc/logits_real", "disc/logits_fake"} <= set(logs)
    total_before, _ = loss(x, x_hat, {}, step=4)
    assert total_before.item() == pytest.approx((x - x_hat).abs().mean().item(), rel=1e-6)


@pytest.mark.bad_input
def test_bad_options_and_shapes():
    with pytest.raises(ValueError, match="'hinge' or 'vanilla'"):
        LOSSES.build("adversarial", loss="wgan")
    term = LOSSES.build("adversarial", filters=8)
    x, x_hat = _pair()
    with pytest.raises(ValueError, match="differ in shape"):
        term(x, x_hat[:, :, :16])
