"""Autoencoder presets: shapes, parameter layout, quantiser behaviour."""

from __future__ import annotations

import pytest
import torch

from ablate.models import PRESETS, build_model
from ablate.models.quantize import VectorQuantizer


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_reconstructs_its_input_shape(name):
    size = 256 if name.startswith("paper") else 32
    torch.manual_seed(0)
    model = build_model(name, size)
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        y, aux = model(x)
    assert y.shape == x.shape
    assert aux["codebook"].dim() == 0
    arch = model.arch
    z = model.encoder(x)
    assert z.shape == (1, arch.z_channels, size // arch.downsampling(), size // arch.downsampling())


def test_paper_preset_matches_the_papers_latent():
    model = build_model("paper256", 256)
    with torch.no_grad():
        zq, _ = model.encode(torch.rand(1, 3, 256, 256))
    assert zq.shape == (1, 128, 32, 32)  # 32x32x128 latent
    assert model.quantize.embedding.weight.shape == (512, 128)  # 512-entry codebook
    assert model.quantize.beta == 0.25
    # The decoder has num_res_blocks + 1 = 2 blocks per level; the encoder 1.
    assert all(len(level.blocks) == 1 for level in model.encoder.down)
    assert all(len(level.blocks) == 2 for level in model.decoder.up)


def test_edge_channel_models_have_four_channels_in_and_out():
    model = build_model("tiny", 32, in_channels=4)
    y, _ = model(torch.rand(2, 4, 32, 32))
    assert y.shape == (2, 4, 32, 32)
    with pytest.raises(ValueError, match=r"expected input \(B, 4, H, W\)"):
        model(torch.rand(2, 3, 32, 32))


def test_edge_channel_spec_builds_a_four_channel_model(tmp_path):
    from ablate.config import load_grid
    from ablate.models.presets import build_for_spec

    p = tmp_path / "g.yaml"
    p.write_text("base: {data: {size: 32}, model: {preset: tiny, edge_channel: {family: meijering, sigmas: [1.0]}},"
                 " losses: {l1: {weight: 1.0}}}\ncombinations: {edge: {}}\n")
    (spec,) = load_grid(p).trials
    model, edge = build_for_spec(spec)
    x = torch.rand(2, 3, 32, 32)
    x4 = edge(x)
    assert x4.shape == (2, 4, 32, 32) and torch.equal(x4[:, :3], x)
    assert x4[:, 3].min() >= 0 and x4[:, 3].amax(dim=(1, 2)).allclose(torch.ones(2), atol=1e-4)
    assert model(x4)[0].shape == (2, 4, 32, 32)
    assert spec.flat()["model.edge_channel.family"] == "meijering"


@pytest.mark.bad_input
def test_edge_channel_rejects_bad_options(tmp_path):
    from ablate.config import ConfigError, load_grid

    for bad, msg in (("{channel: rgb}", "one extra channel"), ("{family: sobell}", "family"),
                     ("{sigmaz: 1}", "sigmaz")):
        p = tmp_path / "g.yaml"
        p.write_text(f"base: {{model: {{preset: tiny, edge_channel: {bad}}}, losses: {{l1: {{}}}}}}\ncombinations: {{e: {{}}}}\n")
        with pytest.raises(ConfigError, match=msg):
            load_grid(p)


def test_plain_autoencoder_has_no_quantiser_and_zero_codebook_loss():
    model = build_model("tiny_ae", 32)
    assert model.quantize is None
    _, aux = model(torch.rand(1, 3, 32, 32))
    assert aux["codebook"].item() == 0.0


def test_quantiser_snaps_to_nearest_code_and_passes_gradients_straight_through():
    torch.manual_seed(0)
    vq = VectorQuantizer(n_embed=4, embed_dim=2, beta=0.25)
    z = torch.randn(1, 2, 3, 3, requires_grad=True)
    zq, aux = vq(z)
    codes = vq.embedding.weight
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 2)
    nearest = codes[torch.cdist(flat, codes).argmin(1)]
    assert torch.allclose(zq.detach().permute(0, 2, 3, 1).reshape(-1, 2), nearest)
    zq.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))  # identity gradient through quantisation


@pytest.mark.parametrize("legacy", [True, False])
def test_quantiser_loss_formula(legacy):
    torch.manual_seed(1)
    vq = VectorQuantizer(n_embed=8, embed_dim=3, beta=0.4, legacy=legacy)
    z = torch.randn(2, 3, 2, 2)
    zq, aux = vq(z)
    d = ((zq.detach() - z) ** 2).mean()
    expected = d + 0.4 * d  # both halves have the same value; only where gradients go differs
    assert torch.allclose(aux["codebook"], expected)
    # Where the gradient goes: legacy puts weight 1 on commitment (encoder), beta on the codebook.
    z.requires_grad_(True)
    vq.zero_grad()
    _, aux = vq(z)
    aux["codebook"].backward()
    # Each code's gradient is the (negated) sum of its members' gradients, scaled by the
    # ratio of the two weights; signed sums compare them without assignment bookkeeping.
    ratio = (vq.embedding.weight.grad.sum() / -z.grad.sum()).item()
    assert ratio == pytest.approx(0.4 if legacy else 1 / 0.4, rel=1e-4)


@pytest.mark.bad_input
def test_bad_resolution_is_rejected():
    with pytest.raises(ValueError, match="not divisible"):
        build_model("paper256", 100)
