"""The quantiser (ablate.models.quantize): nearest code with straight-through gradients, its
loss formula; a plain autoencoder has none and a zero codebook loss."""

from __future__ import annotations

import pytest
import torch

from ablate.models import build_model
from ablate.models.quantize import VectorQuantizer


def test_plain_autoencoder_has_no_quantiser_and_zero_codebook_loss():
    model = build_model("tiny_ae", 32)
    assert model.quantize is None
    _, aux = model(torch.rand(1, 3, 32, 32))
    assert aux["codebook"].item() == 0.0


def test_quantiser_snaps_to_nearest_code_and_passes_gradients_straight_through():
    torch.manual_seed(0)
    vq = VectorQuantizer(n_embed=4, embed_dim=2, beta=0.25)
    z = torch.randn(1, 2, 3, 3, requires_grad=True)
    zq, _aux = vq(z)
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


def test_code_grid_round_trip_decodes_as_the_forward_pass_does():
    """encode_codes gives the grid the quantiser picked; decode_codes of it is the model's own
    reconstruction (what a prior's samples rely on)."""
    torch.manual_seed(0)
    model = build_model("tiny", 32).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        codes = model.encode_codes(x)
        recon, aux = model(x)
        assert codes.dtype == torch.long and codes.shape == (2, 32 // model.arch.downsampling(),
                                                             32 // model.arch.downsampling())
        assert torch.equal(codes, aux["indices"])
        # z + (zq - z) in the forward pass rounds to within float eps of zq
        assert torch.allclose(model.decode_codes(codes), recon, atol=1e-4)
    with pytest.raises(ValueError, match=r"\[0, "):
        model.decode_codes(torch.full_like(codes, model.arch.n_embed))
    with pytest.raises(ValueError, match="no codebook"):
        build_model("tiny_ae", 32).encode_codes(x)
