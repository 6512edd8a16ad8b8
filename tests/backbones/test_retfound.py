"""RETFound and other ViT backbones (ablate.backbones.retfound): building, the published
checkpoint names and shapes, the MAE / DINOv2 / plain formats, frozen and in eval.

No pretrained weights exist on this machine, so every file loaded here is a
stand-in written by the test in the exact on-disk format of the real one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ablate.backbones.retfound import (
    MODELS,
    CheckpointMismatch,
    build_vit,
    check_taps,
    frozen_vit,
    load_vit_checkpoint,
    resize_pos_embed,
    retfound_weights_path,
)
from ablate.weights import WeightsMissing
from tests.weights_servers import place_in_hf_cache

pytestmark = pytest.mark.usefixtures("one_thread", "own_ablate_cache")


# ----------------------------------------------------------------------------- RETFound ViT

# RETFound's published ViT-L/16 (rmaphoh/RETFound_MAE models_vit.vit_large_patch16,
# global_pool=False, head removed), i.e. timm VisionTransformer names, written out
# by hand so a change of timm naming or of our builder shows up here.
RETFOUND_TOP = {
    "cls_token": (1, 1, 1024),
    "pos_embed": (1, 197, 1024),  # 1 CLS + 14x14 patches
    "patch_embed.proj.weight": (1024, 3, 16, 16),
    "patch_embed.proj.bias": (1024,),
    "norm.weight": (1024,),
    "norm.bias": (1024,),
}


RETFOUND_BLOCK = {
    "norm1.weight": (1024,),
    "norm1.bias": (1024,),
    "attn.qkv.weight": (3072, 1024),
    "attn.qkv.bias": (3072,),
    "attn.proj.weight": (1024, 1024),
    "attn.proj.bias": (1024,),
    "norm2.weight": (1024,),
    "norm2.bias": (1024,),
    "mlp.fc1.weight": (4096, 1024),
    "mlp.fc1.bias": (4096,),
    "mlp.fc2.weight": (1024, 4096),
    "mlp.fc2.bias": (1024,),
}


def expected_keys(top, block, depth=24):
    out = dict(top)
    for i in range(depth):
        out.update({f"blocks.{i}.{k}": v for k, v in block.items()})
    return out


def shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_retfound_vit_large_matches_published_names_and_shapes():
    with torch.device("meta"):  # 300M parameters: shapes only, no memory
        vit = build_vit(MODELS["retfound"]["arch"])
    assert shapes(vit) == expected_keys(RETFOUND_TOP, RETFOUND_BLOCK)
    assert len(vit.blocks) == 24
    assert vit.blocks[0].norm1.eps == 1e-6 and vit.norm.eps == 1e-6
    assert isinstance(vit.head, nn.Identity)


def test_retfound_dinov2_vit_large_patch14_names_and_shapes():
    with torch.device("meta"):
        vit = build_vit(MODELS["retfound_dinov2"]["arch"])
    top = {**RETFOUND_TOP, "pos_embed": (1, 257, 1024), "patch_embed.proj.weight": (1024, 3, 14, 14)}
    block = {**RETFOUND_BLOCK, "ls1.gamma": (1024,), "ls2.gamma": (1024,)}  # DINOv2 LayerScale
    assert shapes(vit) == expected_keys(top, block)


TINY = {"img_size": 32, "patch_size": 16, "embed_dim": 32, "depth": 4, "num_heads": 2}  # 2x2 patches


def randomised(model):
    """State dict with every tensor random (so equality checks cannot pass by init coincidence)."""
    g = torch.Generator().manual_seed(1)
    return {k: torch.randn(v.shape, generator=g) for k, v in model.state_dict().items()}


def save_mae_checkpoint(path, arch=TINY, ckpt_img_size=48, with_head=True):
    """A checkpoint in RETFound's MAE pretraining format, pos_embed on another grid (3x3)."""
    sd = randomised(build_vit({**arch, "img_size": ckpt_img_size}))
    c, dd = arch["embed_dim"], 16
    n = (ckpt_img_size // arch["patch_size"]) ** 2
    sd.update({
        "mask_token": torch.randn(1, 1, dd),
        "decoder_embed.weight": torch.randn(dd, c),
        "decoder_embed.bias": torch.randn(dd),
        "decoder_pos_embed": torch.randn(1, 1 + n, dd),
        "decoder_blocks.0.norm1.weight": torch.randn(dd),
        "decoder_blocks.0.attn.qkv.weight": torch.randn(3 * dd, dd),
        "decoder_norm.weight": torch.randn(dd),
        "decoder_pred.weight": torch.randn(arch["patch_size"] ** 2 * 3, dd),
    })
    if with_head:
        sd.update({"head.weight": torch.randn(5, c), "head.bias": torch.randn(5)})
    ckpt = {
        "model": sd,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1.5e-4, "weight_decay": 0.05, "params": [0, 1]}]},
        "epoch": 799,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0},
    }
    torch.save(ckpt, path)
    return sd


def test_mae_format_loads_drops_and_interpolates(tmp_path):
    path = tmp_path / "RETFound_mae_natureCFP.pth"
    saved = save_mae_checkpoint(path)
    vit = build_vit(TINY)
    rep = load_vit_checkpoint(vit, path, "retfound_mae")
    assert rep.source == "ckpt['model']"
    assert set(rep.dropped) == {k for k in saved if "decoder" in k or k == "mask_token" or k.startswith("head.")}
    assert rep.pos_embed_resized == ((1, 10, 32), (1, 5, 32))
    own = vit.state_dict()
    assert "mask_token" not in own and not any("decoder" in k for k in own)
    for k, v in own.items():
        if k != "pos_embed":
            assert torch.equal(v, saved[k]), k
    assert own["pos_embed"].shape == (1, 5, 32)
    assert torch.equal(own["pos_embed"][:, 0], saved["pos_embed"][:, 0])  # CLS position kept as is
    assert torch.equal(own["pos_embed"], resize_pos_embed(saved["pos_embed"], (2, 2)))


def test_frozen_vit_from_checkpoint_is_frozen_and_stays_in_eval(tmp_path):
    path = tmp_path / "ckpt.pth"
    saved = save_mae_checkpoint(path)
    m = frozen_vit(TINY, True, path, "retfound_mae")
    assert m.pretrained and "ckpt['model']" in m.source
    assert torch.equal(m.vit.blocks[3].mlp.fc2.weight, saved["blocks.3.mlp.fc2.weight"])
    assert not any(p.requires_grad for p in m.parameters())
    nn.Sequential(m).train()  # a parent switching to training recurses into the extractor
    assert not any(mod.training for mod in m.modules())


def test_pos_embed_resize_keeps_row_major_grid_order():
    # Channel 0 encodes the row, channel 1 the column of a 3x3 grid. After resizing,
    # channel 0 must still be constant along each row and channel 1 along each column;
    # a transposed reshape would swap them.
    r, c = torch.meshgrid(torch.arange(3.0), torch.arange(3.0), indexing="ij")
    pe = torch.cat([torch.full((1, 1, 2), -7.0), torch.stack([r, c], -1).reshape(1, 9, 2)], dim=1)
    out = resize_pos_embed(pe, (5, 5))
    assert out.shape == (1, 26, 2)
    assert torch.equal(out[0, 0], torch.tensor([-7.0, -7.0]))
    grid = out[0, 1:].reshape(5, 5, 2)
    assert torch.allclose(grid[..., 0], grid[..., 0][:, :1].expand(5, 5), atol=1e-6)  # rows
    assert torch.allclose(grid[..., 1], grid[..., 1][:1, :].expand(5, 5), atol=1e-6)  # columns
    assert grid[0, 0, 0] < grid[4, 0, 0] and grid[0, 0, 1] < grid[0, 4, 1]
    assert resize_pos_embed(pe, (3, 3)) is pe  # same grid: untouched
    # On a random embedding it is MAE/RETFound's interpolate_pos_embed operation:
    # bicubic, align_corners=False, on the (C, h, w) grid.
    rnd = torch.randn(1, 1 + 9, 4)
    grid_ref = torch.nn.functional.interpolate(
        rnd[:, 1:].reshape(1, 3, 3, 4).permute(0, 3, 1, 2), size=(4, 4), mode="bicubic", align_corners=False
    ).permute(0, 2, 3, 1).reshape(1, 16, 4)
    assert torch.allclose(resize_pos_embed(rnd, (4, 4)), torch.cat([rnd[:, :1], grid_ref], 1), atol=1e-6)


def test_plain_state_dict_fallback_is_reported(tmp_path):
    sd = randomised(build_vit(TINY))
    torch.save(sd, tmp_path / "plain.pth")
    vit = build_vit(TINY)
    rep = load_vit_checkpoint(vit, tmp_path / "plain.pth", "retfound_mae")
    assert rep.source.startswith("plain state dict") and rep.pos_embed_resized is None
    assert torch.equal(vit.pos_embed, sd["pos_embed"])
    rep = load_vit_checkpoint(build_vit(TINY), tmp_path / "plain.pth", "state_dict")
    assert rep.source == "plain state dict"


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda sd: sd.update({"blocks.0.attn.extra.weight": torch.zeros(2)}), "blocks.0.attn.extra.weight"),
        (lambda sd: sd.pop("norm.weight"), "norm.weight"),
        (lambda sd: sd.update({"blocks.1.mlp.fc1.weight": torch.zeros(7, 32)}), "blocks.1.mlp.fc1.weight"),
        (lambda sd: sd.update({"fc_norm_typo.weight": torch.zeros(32)}), "fc_norm_typo.weight"),
    ],
)
@pytest.mark.bad_input
def test_real_mismatches_fail_loudly_naming_the_key(tmp_path, edit, named):
    path = tmp_path / "ckpt.pth"
    save_mae_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    edit(ckpt["model"])
    torch.save(ckpt, path)
    with pytest.raises(CheckpointMismatch, match=named.replace(".", r"\.")):
        load_vit_checkpoint(build_vit(TINY), path, "retfound_mae")


@pytest.mark.bad_input
def test_wrong_container_or_format_name_fails(tmp_path):
    torch.save({"teacher": {"x": torch.zeros(1)}, "iteration": 3}, tmp_path / "dino.pth")
    with pytest.raises(CheckpointMismatch, match="not a retfound_mae checkpoint"):
        load_vit_checkpoint(build_vit(TINY), tmp_path / "dino.pth", "retfound_mae")
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        load_vit_checkpoint(build_vit(TINY), tmp_path / "dino.pth", "mae")


def test_dinov2_teacher_format_with_renames(tmp_path):
    arch = {**TINY, "init_values": 1e-5}
    src = randomised(build_vit({**arch, "img_size": 48}))
    teacher = {}
    for k, v in src.items():  # DINOv2 names: backbone. prefix, SwiGLU-style w12/w3 MLP names
        teacher["backbone." + k.replace("mlp.fc1.", "mlp.w12.").replace("mlp.fc2.", "mlp.w3.")] = v
    teacher.update({
        "backbone.mask_token": torch.randn(1, 32),
        "dino_head.mlp.0.weight": torch.randn(8, 32),
        "ibot_head.last_layer.weight_g": torch.randn(8, 1),
    })
    torch.save({"teacher": teacher, "student": {}, "iteration": 10}, tmp_path / "RETFound_dinov2_meh.pth")
    vit = build_vit(arch)
    rep = load_vit_checkpoint(vit, tmp_path / "RETFound_dinov2_meh.pth", "dinov2")
    assert rep.source.startswith("ckpt['teacher']")
    assert set(rep.dropped) == {"mask_token", "dino_head.mlp.0.weight", "ibot_head.last_layer.weight_g"}
    own = vit.state_dict()
    assert torch.equal(own["blocks.2.mlp.fc1.weight"], src["blocks.2.mlp.fc1.weight"])
    assert torch.equal(own["blocks.2.mlp.fc2.bias"], src["blocks.2.mlp.fc2.bias"])
    assert torch.equal(own["blocks.1.ls1.gamma"], src["blocks.1.ls1.gamma"])
    assert own["pos_embed"].shape == (1, 5, 32)


def test_tokens_match_timm_and_taps_are_one_based():
    m = frozen_vit(TINY, False, None, "retfound_mae")
    assert not m.pretrained
    x = torch.rand(2, 3, 32, 32)
    t2, t4 = m.tokens(x, (2, 4))
    assert t2.shape == t4.shape == (2, 5, 32)  # CLS + 2x2 patches, no pooling
    # Independent path: timm's own forward. After the last block plus the final norm
    # our tokens must be timm's forward_features; tap 2 is timm's intermediate index 1.
    assert torch.allclose(m.vit.norm(t4), m.vit.forward_features(x), atol=1e-6)
    spatial, prefix = m.vit.forward_intermediates(
        x, indices=[1], output_fmt="NLC", return_prefix_tokens=True, intermediates_only=True
    )[0]
    assert torch.allclose(t2, torch.cat([prefix, spatial], 1), atol=1e-6)
    for bad in [(0,), (5,), (3, 2), (2, 2), ()]:
        with pytest.raises(ValueError, match="taps"):
            check_taps(bad, 4)


@pytest.mark.bad_input
def test_retfound_weights_lookup_and_missing_message(tmp_path, monkeypatch):
    # Changed with the weights table (#15): the default place is the Hugging Face cache, where
    # hf_hub_download puts the file, not ~/.cache/ablate/weights; files there are verified.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("ABLATE_RETFOUND_WEIGHTS", raising=False)
    repo_dir = tmp_path / "hf" / "hub" / "models--YukunZhou--RETFound_mae_natureCFP"
    with pytest.raises(WeightsMissing) as e:
        retfound_weights_path("retfound")
    msg = str(e.value)
    assert "RETFound_mae_natureCFP.pth" in msg and "YukunZhou/RETFound_mae_natureCFP" in msg
    assert str(repo_dir) in msg and "ABLATE_RETFOUND_WEIGHTS" in msg and "ablate weights fetch retfound" in msg
    # A copy at the old default place is pointed out, not silently used.
    old = tmp_path / "ablate_cache" / "weights" / "RETFound_mae_natureCFP.pth"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"x")
    with pytest.raises(WeightsMissing, match=str(old)):
        retfound_weights_path("retfound")

    default = place_in_hf_cache(tmp_path / "hf" / "hub", "YukunZhou/RETFound_mae_natureCFP",
                                "RETFound_mae_natureCFP.pth", b"stand-in bytes")
    assert retfound_weights_path("retfound") == default
    other = tmp_path / "elsewhere.pth"
    other.write_bytes(b"x")
    monkeypatch.setenv("ABLATE_RETFOUND_WEIGHTS", str(other))
    assert retfound_weights_path("retfound") == other
    assert retfound_weights_path("retfound", str(default)) == default  # explicit wins
    with pytest.raises(WeightsMissing, match="RETFound_dinov2_meh.pth"):
        retfound_weights_path("retfound_dinov2")
