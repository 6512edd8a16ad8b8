"""Autoencoder presets (ablate.models.presets): every preset reconstructs its input's shape, the paper preset has the paper's latent, a bad resolution is rejected."""

from __future__ import annotations

import pytest
import torch

from ablate.models import PRESETS, build_model


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


@pytest.mark.bad_input
def test_bad_resolution_is_rejected():
    with pytest.raises(ValueError, match="not divisible"):
        build_model("paper256", 100)
