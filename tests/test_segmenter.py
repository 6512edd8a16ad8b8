"""The vessel segmenters (U-Net and ridge-filter fallback), their metrics, and `ablate segmenter train`.

Unit tests run on CPU with tiny tensors; the classical segmenter is scored on a
real DRIVE test photograph at 256 px; the Ray test trains the U-Net on DRIVE
prepared at 64 px for a few steps and loads the file it writes.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ablate.data.preprocess import preprocess
from ablate.segmenter.camera import CameraJitter
from ablate.segmenter.cli import _DEFAULT_OUT
from ablate.segmenter.cli import app as seg_app
from ablate.segmenter.inputs import fov_from_images
from ablate.segmenter.patches import PatchSampler, WholeImages, augment_image
from ablate.segmenter.protocol import Segmenter
from ablate.segmenter.ridge import RidgeSegmenter
from ablate.segmenter.scores import dice, evaluate_arrays, roc_auc
from ablate.segmenter.train import vessel_loss
from ablate.segmenter.unet import UNet, UNetSegmenter, build_unet, fov_stats, fov_stats_numpy, standardize, unet_logits
from ablate.segmenter.unet_file import DEFAULT_WEIGHTS, load_segmenter, save_segmenter

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(seed=0) -> UNet:
    torch.manual_seed(seed)
    return build_unet({"base": 4, "levels": 3})


def _lines(n=4, size=32, seed=0):
    """Synthetic fundus-like batch: reddish disc (FOV) with darker random lines (vessels)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    fov = ((yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 < (size / 2 - 1) ** 2).expand(n, -1, -1)
    vessel = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        for _ in range(3):
            a, b = torch.rand(2, generator=g) * 6.28
            d = (torch.cos(a) * (xx - size / 2) + torch.sin(a) * (yy - size / 2) - (b - 3.14) * 2).abs()
            vessel[i] |= d < 1.2
    vessel &= fov
    img = torch.tensor([0.8, 0.45, 0.2]).view(1, 3, 1, 1) * (1 - 0.5 * vessel[:, None].float())
    img = (img + 0.03 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1) * fov[:, None]
    return img, fov.clone(), vessel


# ----------------------------------------------------------------------------- U-Net


def test_unet_shapes_params_and_gradients():
    m = build_unet()  # the default: base 16, 4 levels
    assert 0.4e6 < sum(p.numel() for p in m.parameters()) < 0.6e6
    t = _tiny()
    x = torch.randn(2, 3, 24, 32, requires_grad=True)
    out = t(x)
    assert out.shape == (2, 24, 32)
    out.mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in t.parameters())
    with pytest.raises(ValueError, match="multiple of 4"):
        t(torch.randn(1, 3, 30, 32))
    # unet_logits pads to the multiple and crops back
    img, fov, _ = _lines(2, 30)
    assert unet_logits(t.eval(), img, fov).shape == (2, 30, 30)
    with pytest.raises(ValueError, match="unknown U-Net arch"):
        build_unet({"width": 3})
    with pytest.raises(ValueError, match="norm"):
        build_unet({"norm": "layer"})


def test_standardisation_matches_between_numpy_stream_and_torch():
    img, fov, _ = _lines(2, 32)
    u8 = (img * 255).round().to(torch.uint8)
    x = u8.float() / 255
    st = fov_stats(x, fov)
    for i in range(2):
        np.testing.assert_allclose(fov_stats_numpy(u8[i].permute(1, 2, 0).numpy(), fov[i].numpy()), st[i].numpy(), atol=1e-5)
    z = standardize(x, fov)
    assert (z[:, :, ~fov[0]] == 0).all()
    inside = z[0][:, fov[0]]
    assert torch.allclose(inside.mean(1), torch.zeros(3), atol=1e-5) and torch.allclose(inside.std(1, unbiased=False), torch.ones(3), atol=1e-3)
    # Global brightness/contrast per channel does not change the input the network sees.
    x2 = (x * 0.7 + 0.1) * fov[:, None]
    assert torch.allclose(standardize(x2, fov), z, atol=1e-4)
    found = fov_from_images(x)
    for i in range(2):
        assert torch.equal(found[i], x[i, 0] > max(8 / 255, 0.15 * float(torch.quantile(x[i, 0].flatten(), 0.99))))
    assert torch.equal(found, fov)  # the red disc on black


def test_loss_decreases_on_a_fixed_batch():
    img, fov, vessel = _lines(4, 32)
    m = _tiny()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss, logs = vessel_loss(unet_logits(m, img, fov), vessel.float(), fov)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert set(logs) == {"seg/loss", "seg/bce", "seg/soft_dice"}
    assert losses[-1] < 0.6 * losses[0]
    # Outside the FOV nothing counts.
    logits = unet_logits(m, img, fov).detach()
    flipped = vessel.float().clone()
    flipped[~fov] = 1 - flipped[~fov]
    assert torch.allclose(vessel_loss(logits, vessel.float(), fov)[0], vessel_loss(logits, flipped, fov)[0])


def test_save_load_round_trip_and_predict(tmp_path):
    m = _tiny(1)
    m.train()(torch.randn(2, 3, 32, 32))  # non-trivial BatchNorm running stats
    path = save_segmenter(tmp_path / "my_unet.pth", m, {"base": 4, "levels": 3}, size=32, trained_on="synthetic",
                          metrics={"dice": 0.5, "auc": 0.9})
    seg = load_segmenter(path)
    assert isinstance(seg, UNetSegmenter) and isinstance(seg, Segmenter)
    assert seg.name == "unet:my_unet" and seg.threshold == 0.5 and seg.size == 32
    assert seg.metrics == {"dice": 0.5, "auc": 0.9} and seg.meta["trained_on"] == "synthetic"
    # The threshold chosen at training travels in the file, with its rule.
    path2 = save_segmenter(tmp_path / "t.pth", m, {"base": 4, "levels": 3}, size=32, trained_on="synthetic",
                           threshold=0.37, threshold_rule="max pooled Dice on the val split")
    seg2 = load_segmenter(path2)
    assert seg2.threshold == 0.37 and seg2.meta["threshold_rule"].startswith("max pooled Dice")
    for k, v in m.state_dict().items():
        assert torch.equal(seg.model.state_dict()[k], v), k
    assert not seg.model.training
    img, fov, _ = _lines(3, 32)
    p = seg.predict(img, fov)
    assert p.shape == (3, 32, 32) and p.min() >= 0 and p.max() <= 1 and (p[~fov] == 0).all()
    with torch.no_grad():
        assert torch.allclose(p, torch.sigmoid(unet_logits(m.eval(), img, fov)) * fov, atol=1e-6)
    # Other sizes are resampled to the training size and back.
    img64 = torch.nn.functional.interpolate(img, size=64, mode="bilinear")
    fov64 = torch.nn.functional.interpolate(fov[:, None].float(), size=64)[:, 0] > 0.5
    assert seg.predict(img64, fov64).shape == (3, 64, 64)
    assert seg.predict(img).shape == (3, 32, 32)  # FOV found by threshold


@pytest.mark.bad_input
def test_missing_file_names_it_and_the_command(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_segmenter(tmp_path / "nope.pth")
    assert "nope.pth" in str(e.value) and "ablate segmenter train --data" in str(e.value)
    torch.save({"something": 1}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a vessel segmenter file"):
        load_segmenter(tmp_path / "bad.pth")
    assert _DEFAULT_OUT == DEFAULT_WEIGHTS


# ----------------------------------------------------------------------------- metrics


def test_roc_auc_matches_brute_force_pairs():
    rng = np.random.default_rng(0)
    for n, levels in ((60, None), (80, 5)):  # continuous scores, then many ties
        s = rng.random(n) if levels is None else rng.integers(0, levels, n).astype(float)
        y = rng.random(n) < 0.3
        pos, neg = s[y], s[~y]
        brute = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg)])
        assert roc_auc(s, y) == pytest.approx(brute, abs=1e-12)
    assert roc_auc([0.1, 0.9], [False, True]) == 1.0
    with pytest.raises(ValueError, match="both"):
        roc_auc([0.1, 0.2], [True, True])


def test_dice_and_evaluate_arrays_count_inside_fov_only():
    assert dice([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert dice([0, 0], [0, 0]) == 1.0
    _, fov, vessel = _lines(2, 32)
    prob = vessel.float().numpy().copy()
    prob[~fov.numpy()] = 1.0  # outside the FOV: ignored
    m = evaluate_arrays(prob, vessel.numpy(), fov.numpy(), 0.5)
    assert m["dice"] == 1.0 and m["auc"] == 1.0 and m["dice_mean_per_image"] == 1.0 and m["n_images"] == 2
    assert m["sensitivity"] == 1.0 and m["specificity"] == 1.0 and m["accuracy"] == 1.0


# ----------------------------------------------------------------------------- classical fallback


def test_ridge_segmenter_on_a_real_drive_test_image(drive_dir):
    stem = "01_test"
    p = preprocess(drive_dir / "images" / f"{stem}.tif", 256, fov=drive_dir / "fov" / f"{stem}.gif",
                   vessel=drive_dir / "vessels" / f"{stem}.gif")
    x = torch.from_numpy(p.image).permute(2, 0, 1)[None].float() / 255
    fov = torch.from_numpy(p.fov)[None]
    seg = load_segmenter("ridge")
    assert isinstance(seg, RidgeSegmenter) and isinstance(seg, Segmenter) and seg.name == "ridge:meijering+otsu"
    prob = seg.predict(x, fov)
    assert prob.shape == (1, 256, 256) and prob.min() >= 0 and prob.max() <= 1 and (prob[~fov] == 0).all()
    m = evaluate_arrays(prob.numpy(), p.vessel[None], p.fov[None], seg.threshold)
    # Measured: Dice 0.680, AUC 0.929 (meijering, sigmas 0.5/1/1.5 px at 256, CLAHE, Otsu).
    assert m["dice"] > 0.62 and m["auc"] > 0.9, m
    # `> 0.5` is Otsu's binary map of the response; prob is increasing in the response.
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    r = seg.response(x[0, 1].numpy(), p.fov)
    inner = ndimage.binary_erosion(p.fov, iterations=3)
    t = threshold_otsu(r[inner])
    assert np.array_equal(prob[0].numpy() > 0.5, (r > t) & p.fov)
    inside = p.fov
    order = np.argsort(r[inside], kind="stable")
    assert (np.diff(prob[0].numpy()[inside][order]) >= -1e-6).all()
    assert load_segmenter("ridge:frangi").name == "ridge:frangi+otsu"
    with pytest.raises(ValueError, match="ridge family"):
        load_segmenter("ridge:sobel")


# ----------------------------------------------------------------------------- training stream


def _row(size=64, seed=0):
    from ablate.data.preprocess import png_bytes

    img, fov, vessel = _lines(1, size, seed)
    u8 = (img[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    return u8, fov[0].numpy(), vessel[0].numpy(), {"image": png_bytes(u8), "fov": png_bytes(fov[0].numpy()),
                                                   "vessel": png_bytes(vessel[0].numpy())}


def test_patch_sampler_and_augmentation():
    u8, fov, vessel, row = _row()
    batch = {k: np.array([v, v], dtype=object) for k, v in row.items()}
    out = PatchSampler(32, 5)(batch)
    assert out["image"].shape == (10, 3, 32, 32) and out["image"].dtype == np.uint8
    assert out["fov"].shape == out["vessel"].shape == (10, 32, 32) and out["stats"].shape == (10, 6)
    assert set(np.unique(out["vessel"])) <= {0, 255} and not (out["vessel"] > out["fov"]).any()
    assert out["fov"].reshape(10, -1).mean(1).min() > 0  # centred on FOV pixels
    # Without jitter the stats are the whole image's and patches are crops of it (up to flips/turns).
    plain = PatchSampler(32, 3, jitter=None)(batch)
    np.testing.assert_allclose(plain["stats"][0], fov_stats_numpy(u8, fov), atol=1e-6)
    whole = u8.transpose(2, 0, 1)
    p = plain["image"][0]
    variants = [np.rot90(p, -k, axes=(1, 2)) for k in range(4)] + [np.rot90(p[..., ::-1], -k, axes=(1, 2)) for k in range(4)]
    found = any((whole[:, r:r + 32, c:c + 32] == v).all() for v in variants for r in range(33) for c in range(33))
    assert found
    rng = np.random.default_rng(0)
    a_img, a_fov, a_ves = augment_image(u8, fov, vessel, rng, CameraJitter())
    assert a_img.shape == u8.shape and a_img.dtype == np.uint8 and not (a_ves & ~a_fov).any()
    assert (a_img[~a_fov] == 0).all() and not np.array_equal(a_img, u8)
    w = WholeImages()(batch)
    assert w["image"].shape == (2, 3, 64, 64) and w["fov"].shape == (2, 64, 64)


# ----------------------------------------------------------------------------- Ray end to end


@pytest.fixture(scope="module")
def drive64(tmp_path_factory, drive_dir):
    from ablate.data.shards import prepare

    out = tmp_path_factory.mktemp("drive64")
    prepare(drive_dir, out, size=64)
    return out


@pytest.mark.bad_input
def test_train_validates_before_ray(drive64, tmp_path):
    from ablate.runtime import RunOptions
    from ablate.segmenter.train import train_segmenter

    with pytest.raises(ValueError, match="patch 96 px"):
        train_segmenter(drive64, tmp_path / "x.pth", patch=96)
    with pytest.raises(ValueError, match="divisible"):
        train_segmenter(drive64, tmp_path / "x.pth", RunOptions(steps=10, batch_size=3, lr=1e-3, workers=2), patch=32)
    r = CliRunner().invoke(seg_app, ["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "x.pth")])
    assert r.exit_code == 2 and "not a prepared dataset" in r.output


@pytest.mark.ray
def test_train_end_to_end_with_ray(ray_local, drive64, tmp_path):
    from ablate.runtime import RunOptions, ray_output
    from ablate.segmenter.train import train_segmenter

    out = tmp_path / "weights" / "drive_unet.pth"
    ray_output.set_verbose(False)  # the command's default: Ray's output to files beside the run
    try:
        r = train_segmenter(drive64, out, RunOptions(steps=3, batch_size=4, lr=2e-3, log_every=1), patch=32,
                            patches_per_image=4, val_every=3, arch={"base": 4, "levels": 3})
    finally:
        ray_output.set_verbose(True)
        ray_output.restore_driver()
    # Gathered beside the run (this test's Ray was started by the fixture, so there is no
    # session or driver log of ours to copy: the folder is what the shared driver made).
    assert (r.run_dir / "logs").is_dir()
    assert r.out_file == out and out.is_file()
    seg = load_segmenter(out)
    assert seg.name == "unet:drive_unet" and seg.size == 64
    m = seg.metrics
    assert m["segmenter"] == "unet:drive_unet" and m["split"] == "test" and m["n_images"] == 20
    assert 0 <= m["dice"] <= 1 and 0 <= m["auc"] <= 1
    meta = seg.meta
    assert meta["arch"] == {"base": 4, "levels": 3, "norm": "batch"} and meta["training"]["steps"] == 3
    assert "18 images at 64 px" in meta["trained_on"]
    assert "val/dice" in r.last and "seg/loss" in r.last
    assert any(r.tb_dir.glob("events.out.tfevents.*"))
    # The evaluate command scores it (and the fallback) and names the segmenter.
    cli = CliRunner()
    res = cli.invoke(seg_app, ["evaluate", "--data", str(drive64), "--segmenter", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("unet:drive_unet: Dice") and "stored in the file" in res.output
    res = cli.invoke(seg_app, ["evaluate", "--data", str(drive64), "--segmenter", "ridge"])
    assert res.exit_code == 0 and res.output.startswith("ridge:meijering+otsu: Dice"), res.output
    res = cli.invoke(seg_app, ["evaluate", "--data", str(drive64), "--segmenter", str(tmp_path / "missing.pth")])
    assert res.exit_code == 2 and "ablate segmenter train" in res.output
