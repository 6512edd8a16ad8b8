"""`ablate fm pretrain`: the MAE, its RETFound-format file, and a run through Ray Train.

The unit tests run a tiny MAE (32 px, patch 8, 16 patches) on CPU; the Ray test
pretrains on DRIVE at 32 px for six steps and loads the result the way the
`foundation` term does.
"""

from __future__ import annotations

import pytest
import torch
import yaml
from typer.testing import CliRunner

from ablate.backbones.retfound import build_vit, load_vit_checkpoint
from ablate.data.shards import DatasetError
from ablate.fm import pretrain as fm_pretrain
from ablate.fm.cli import _DEFAULT_OUT, foundation_line
from ablate.fm.cli import app as fm_app
from ablate.fm.mae import MaskedAutoencoderViT, load_mae, save_retfound_format
from ablate.fm.pretrain import DEFAULT_OUT, foundation_options, pretrain, suggested_taps
from ablate.losses import LOSSES
from ablate.runtime import RunOptions, lr_factor
from ablate.weights import WeightsMissing
from tests.helpers.tensorboard import tensorboard_events

ARCH = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2}
DECODER = {"decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2}


pytestmark = pytest.mark.usefixtures("one_thread")


def _mae(mask_ratio=0.75, norm_pix_loss=True, seed=0) -> MaskedAutoencoderViT:
    torch.manual_seed(seed)
    return MaskedAutoencoderViT(ARCH, mask_ratio=mask_ratio, norm_pix_loss=norm_pix_loss, **DECODER)


def _waves(n=8, size=32) -> torch.Tensor:
    """Fixed batch of smooth colour waves in [0.1, 0.9]: masked patches are predictable from visible ones."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    f = torch.rand(n, 3, 2, generator=g) * 6 + 1
    ph = torch.rand(n, 3, generator=g) * 6.28
    return 0.5 + 0.4 * torch.sin(f[..., 0, None, None] * xx * 3.14 + f[..., 1, None, None] * yy * 3.14 + ph[..., None, None])


def _encoder_keys(sd: dict) -> set[str]:
    return {k for k in sd if "decoder" not in k and "mask_token" not in k}


# ----------------------------------------------------------------------------- the model

def test_encoder_is_build_vit_with_retfound_keys():
    m = _mae()
    keys = set(m.state_dict())
    assert _encoder_keys(keys) == set(build_vit(ARCH).state_dict())
    assert {"patch_embed.proj.weight", "cls_token", "pos_embed", "blocks.1.mlp.fc2.bias", "norm.weight"} <= keys
    assert {"mask_token", "decoder_embed.weight", "decoder_pos_embed", "decoder_blocks.0.attn.qkv.weight",
            "decoder_norm.weight", "decoder_pred.weight"} <= keys
    assert not any(k.startswith("encoder.") or "in_mean" in k for k in keys)  # top level; normalisation not saved
    assert m.decoder_pred.out_features == 8 * 8 * 3
    assert not m.pos_embed.requires_grad and not m.decoder_pos_embed.requires_grad  # fixed sin-cos


@pytest.mark.parametrize("mask_ratio", [0.75, 0.6])
def test_forward_loss_and_masking(mask_ratio):
    m = _mae(mask_ratio)
    x = torch.rand(3, 3, 32, 32)
    loss, pred, mask = m(x)
    n, keep = 16, round((1 - mask_ratio) * 16)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert pred.shape == (3, n, 8 * 8 * 3) and mask.shape == (3, n)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert (mask.sum(1) == n - keep).all()  # exactly `keep` patches visible per sample
    assert not torch.equal(mask[0], mask[1]) or not torch.equal(mask[1], mask[2])  # per-sample masks
    latent, _, _ = m.forward_encoder(m.normalize(x))
    assert latent.shape == (3, 1 + keep, 64)
    # Masked-only loss: predictions on visible patches do not matter.
    pred2 = pred.detach().clone()
    pred2[mask == 0] += 100.0
    assert torch.allclose(m.forward_loss(m.normalize(x), pred2, mask), loss.detach())


def test_mask_ratio_must_leave_patches_on_both_sides():
    with pytest.raises(ValueError, match="mask_ratio"):
        _mae(mask_ratio=1.0)
    with pytest.raises(ValueError, match="mask_ratio"):
        _mae(mask_ratio=0.0)


def test_patchify_round_trip_and_reconstruction_keeps_visible_patches():
    m = _mae()
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(m.unpatchify(m.patchify(x)), x)
    assert m.patchify(x)[0, 1].reshape(8, 8, 3).permute(2, 0, 1).equal(x[0, :, :8, 8:16])  # patch 1 = row 0, col 1
    with torch.no_grad():
        _, pred, mask = m(x)
    masked, rec = m.reconstruct(x, pred, mask)
    visible = m.unpatchify(mask.unsqueeze(-1).expand(-1, -1, 192)) == 0
    assert torch.allclose(rec[visible], x[visible], atol=1e-6)
    assert (masked[~visible] == 0).all() and rec.min() >= 0 and rec.max() <= 1


def test_imagenet_normalisation_is_applied_inside_forward():
    m = _mae()
    x = torch.full((1, 3, 32, 32), 0.5)
    n = m.normalize(x)
    assert torch.allclose(n[0, :, 0, 0], (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))


def test_gradient_reaches_encoder():
    m = _mae()
    loss, _, _ = m(torch.rand(2, 3, 32, 32))
    loss.backward()
    for name in ("patch_embed.proj.weight", "cls_token", "blocks.0.attn.qkv.weight", "norm.weight", "mask_token",
                 "decoder_pred.weight"):
        g = dict(m.named_parameters())[name].grad
        assert g is not None and g.abs().sum() > 0, name
    assert m.pos_embed.grad is None


def test_training_steps_reduce_the_loss_on_a_fixed_batch():
    m = _mae()
    x = _waves()

    def held_out_mask_loss() -> float:
        torch.manual_seed(123)  # the same masks before and after
        with torch.no_grad():
            return float(m(x)[0])

    before = held_out_mask_loss()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=2e-3)
    for _ in range(40):
        loss, _, _ = m(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out_mask_loss()
    assert after < 0.9 * before, (before, after)


def test_schedule_and_taps():
    assert lr_factor(0, 100, 5) == pytest.approx(0.2) and lr_factor(4, 100, 5) == 1.0
    assert lr_factor(5, 100, 5) == 1.0 and lr_factor(99, 100, 5) == pytest.approx(0.0, abs=1e-3)
    assert lr_factor(0, 10, 0) == 1.0
    assert suggested_taps(24) == (4, 9, 16, 24)
    assert suggested_taps(6) == (1, 2, 4, 6) and suggested_taps(12) == (2, 5, 8, 12) and suggested_taps(2) == (1, 2)


# ----------------------------------------------------------------------------- the file

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A briefly trained tiny MAE saved in RETFound's format."""
    m = _mae(seed=1)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(3):
        loss, _, _ = m(_waves(4))
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = tmp_path_factory.mktemp("fm") / "mae.pth"
    save_retfound_format(m, path, ARCH, epoch=2, extra={"data": "/x", "steps": 3, "taps": [1, 2]})
    return m, path


def test_saved_file_has_retfound_structure(trained):
    _m, path = trained
    ckpt = torch.load(path, map_location="cpu", weights_only=True)  # plain types only: RETFound's loader can read it
    assert set(ckpt) == {"model", "epoch", "args"} and ckpt["epoch"] == 2
    sd = ckpt["model"]
    assert "mask_token" in sd and {k for k in sd if k.startswith("decoder_")} >= {"decoder_embed.weight", "decoder_pos_embed"}
    assert _encoder_keys(sd) == set(build_vit(ARCH).state_dict())
    a = ckpt["args"]
    assert a["arch"] == ARCH and a["imagenet_norm"] is True and a["mask_ratio"] == 0.75
    assert a["data"] == "/x" and a["steps"] == 3
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left nothing behind


def test_saved_file_loads_through_the_retfound_path(trained):
    m, path = trained
    vit = build_vit(ARCH)
    report = load_vit_checkpoint(vit, path, format="retfound_mae")
    assert report.source == "ckpt['model']" and report.pos_embed_resized is None
    assert set(report.dropped) == set(m.state_dict()) - set(vit.state_dict())  # decoder_* + mask_token only
    trained_enc = m.encoder_state_dict()
    for k, v in vit.state_dict().items():
        assert torch.equal(v, trained_enc[k]), k
    again, _args = load_mae(path)  # the whole MAE comes back too
    for k, v in m.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
    # at another resolution, pos_embed is interpolated as for RETFound
    assert load_vit_checkpoint(build_vit({**ARCH, "img_size": 48}), path).pos_embed_resized == ((1, 17, 64), (1, 37, 64))


def test_foundation_term_uses_the_file(trained):
    m, path = trained
    opts = foundation_options(path)
    assert opts == {"model": "custom", "arch": {k: v for k, v in ARCH.items() if k != "img_size"},
                    "weights": str(path.resolve()), "imagenet_norm": True, "input_size": 32, "taps": [1, 2]}
    assert yaml.safe_load(foundation_line(opts)) == {"foundation": opts}  # the CLI's printed line is valid YAML
    term = LOSSES.build("foundation", **opts)
    assert term.backbone.pretrained and term.imagenet_norm
    assert torch.equal(term.backbone.vit.blocks[1].mlp.fc1.weight, m.blocks[1].mlp.fc1.weight)
    x = _waves(2)
    same = term(x, x.clone())
    assert torch.isfinite(same) and same.item() < 1e-6
    assert term(x, x.flip(-1)).item() > 1e-3


def test_fundus_mae_model_reads_arch_size_and_taps_from_the_file(trained, monkeypatch, tmp_path):
    """`model: fundus_mae` (what the losses grid's `auto` picks without RETFound)."""
    m, path = trained
    term = LOSSES.build("foundation", model="fundus_mae", weights=str(path))
    assert term.input_size == ARCH["img_size"] and term.taps == (1, 2) and term.tag == "foundation[fundus_mae]"
    assert torch.equal(term.backbone.vit.blocks[0].attn.qkv.weight, m.blocks[0].attn.qkv.weight)
    monkeypatch.setenv("ABLATE_FUNDUS_MAE_WEIGHTS", str(path))
    assert LOSSES.build("foundation", model="fundus_mae", input_size=48).input_size == 48  # pos_embed interpolated
    monkeypatch.setenv("ABLATE_FUNDUS_MAE_WEIGHTS", str(tmp_path / "absent.pth"))
    with pytest.raises(WeightsMissing, match="ablate fm pretrain"):
        LOSSES.get("foundation").preflight(model="fundus_mae")


# ----------------------------------------------------------------------------- options / CLI

@pytest.mark.bad_input
def test_not_a_prepared_dataset_fails_before_ray(tmp_path):
    with pytest.raises(DatasetError, match="manifest.json"):
        pretrain(tmp_path, tmp_path / "m.pth", RunOptions(steps=1, batch_size=4, lr=1e-3))
    r = CliRunner().invoke(fm_app, ["pretrain", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "m.pth")])
    assert r.exit_code == 2 and "nope" in r.output and "manifest.json" in r.output
    assert not (tmp_path / "m.pth").exists()


@pytest.mark.bad_input
def test_bad_options_fail_before_ray(drive32, tmp_path):
    with pytest.raises(ValueError, match="multiple of the patch size 16"):
        pretrain(drive32, tmp_path / "m.pth", size=24)
    with pytest.raises(DatasetError, match="prepared at 32 px"):
        pretrain(drive32, tmp_path / "m.pth", size=64)
    r = CliRunner().invoke(fm_app, ["pretrain", "--data", str(drive32), "--preset", "huge", "--out", str(tmp_path / "m.pth")])
    assert r.exit_code == 2 and "fundus_mae_tiny" in r.output
    assert _DEFAULT_OUT == DEFAULT_OUT


# ----------------------------------------------------------------------------- through Ray

@pytest.mark.ray
def test_pretrain_through_ray_train(ray_local, drive32, tmp_path):
    out = tmp_path / "fm" / "fundus_mae.pth"
    tiny = {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
    run = RunOptions(steps=6, batch_size=4, lr=1e-3, tb_dir=tmp_path / "tb", log_every=2, image_every=3,
                     checkpoint_every=3)
    r = pretrain(drive32, out, run, arch=tiny, decoder=DECODER)
    arch = {**tiny, "mlp_ratio": 4.0, "img_size": 32}  # mlp_ratio from the preset
    assert r.out_file == out.resolve() and out.is_file() and r.arch == arch and r.steps == 6
    ckpt = torch.load(out, map_location="cpu", weights_only=True)
    assert ckpt["args"]["steps"] == 6 and ckpt["args"]["data"] == str(drive32.resolve()) and ckpt["args"]["imagenet_norm"]
    vit = build_vit(arch)
    load_vit_checkpoint(vit, out, format="retfound_mae")
    assert torch.equal(vit.state_dict()["blocks.0.attn.qkv.weight"], ckpt["model"]["blocks.0.attn.qkv.weight"])
    # the checkpoints Ray Train kept are usable RETFound files too
    kept = sorted(r.run_dir.glob(f"checkpoint_*/{fm_pretrain.MAE_FILE}"))
    assert kept and all(load_vit_checkpoint(build_vit(arch), p) for p in kept)

    acc = tensorboard_events(tmp_path / "tb")
    assert [e.step for e in acc.Scalars("fm/loss")] == [2, 4, 6]
    assert all(e.value == e.value and e.value > 0 for e in acc.Scalars("fm/loss"))  # finite, positive
    assert {"fm/lr", "perf/images_per_s"} <= set(acc.Tags()["scalars"])
    images = acc.Images("fm/input|masked|reconstruction")
    assert [e.step for e in images] == [3, 6] and images[0].width == 3 * 32 and images[0].height == 4 * 32
    assert r.loss == pytest.approx(acc.Scalars("fm/loss")[-1].value, rel=1e-5)

    term = LOSSES.build("foundation", **r.foundation)
    x = torch.rand(2, 3, 32, 32)
    assert term(x, x.clone()).item() < 1e-6
