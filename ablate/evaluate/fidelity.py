"""Reconstruction fidelity: per-pair PSNR / SSIM / MS-SSIM / LPIPS, and set-level FID / KID / FD.

Per pair: `pair_metrics(x, x_hat, lpips=None)`
-----------------------------------------------
x is the target in [0, 1]; x_hat, the reconstruction, is clamped to [0, 1]
first (decoders are linear and overshoot; a saved or displayed image is clamped
too, and skimage's metrics assume the data range). Each metric is a (B,) tensor:
  psnr     10 log10(1 / MSE), MSE over all channels and pixels of an image (data
           range 1, as skimage.metrics.peak_signal_noise_ratio(data_range=1)).
           An exact reconstruction gives +inf, as skimage does.
  ssim     ablate.losses.structural.ssim: skimage's Gaussian variant (sigma 1.5,
           population covariance, 5 px border cropped), mean over channels.
  ms_ssim  only when both sides are >= MS_SSIM_MIN_SIDE (176) px, so the 5th
           scale still holds a full 11 x 11 window; smaller images get no
           `ms_ssim` key (a value from fewer scales would not be MS-SSIM).
  lpips    only when an LPIPS module (ablate.losses.perceptual.LPIPSLoss) is
           passed; the key is the module's tag: `lpips` for the pretrained VGG16
           trunk, `lpips[random-vgg]` for a random one. Nothing here builds an
           LPIPS network, so random weights are never used unless the caller
           built them, and then never under the plain name.
Inputs must be (B, 3, H, W) float tensors of one shape, at least 11 px a side;
anything else raises ValueError naming the problem. x may overshoot [0, 1] by
1e-3 (resampling rounding; clamped), not more. Metrics carry no gradients.

Sets: `FrechetDistance`
-----------------------
Accumulates features of real and generated images in the torchmetrics style
(`update(images, real=True/False)`, `compute()`, `reset()`), for any feature
extractor (callable (B, 3, H, W) -> (B, D)) with a `name`:
  FIDInception (name "inception")  -> keys `fid`, `kid`        (and `kid_std`)
  foundation_features(...)         -> keys `fd_<model>`, `kid_<model>` (`kid_<model>_std`)
                                      e.g. fd_retfound, fd_fundus_mae, fd_custom[random]

Fréchet distance: d^2 = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2), with
mean and covariance (ddof 1, as numpy.cov / pytorch-fid) in float64. The trace
term is computed as the nuclear norm of L1^T L2 for factors S = L L^T: the
eigenvalues of S1 S2 are the squared singular values of L1^T L2, so the sum of
their square roots is exactly tr sqrt(S1 S2). L is the centred feature matrix
/ sqrt(n - 1) when a set has no more samples than dimensions (the usual case at
evaluation: 2048-d Inception features) and V sqrt(w) from eigh(S) otherwise.
Why not scipy.linalg.sqrtm, as pytorch-fid does: on this project's 2-core
machines sqrtm of a 2048 x 2048 product took 45-95 s per call (it falls back to
complex arithmetic when S1 S2 is singular, which it always is with fewer samples
than dimensions), and on a singular product it needs the eps * I offset
pytorch-fid adds, which biases the value. The factor form needs no offset, is
real throughout, gives 0 (to rounding, ~1e-14) for a set against itself, and agrees with the
sqrtm formula where that one is well conditioned: `frechet_distance(...,
method="sqrtm")` keeps pytorch-fid's formula (sqrtm of S1 S2; if the result is
not finite, sqrtm((S1 + eps I)(S2 + eps I)) with eps 1e-6; imaginary parts above
1e-3 on the diagonal raise; the real part is taken), and the tests check the two
against each other and against closed forms.

KID (the kernel, the subsets, the spread): `ablate.evaluate.kid`, its one home.

Sample sizes: with fewer samples than feature dimensions (n < 2048 for Inception)
FID is strongly biased upward and only comparable between runs with the same n;
KID is unbiased at any n >= 2. compute() needs at least 2 samples per set.
The same numbers without the accumulator, from (n, D) feature arrays:
frechet_distance_from_samples(real, fake) (kid.kernel_inception_distance for KID), and
frechet_distance(mu1, sigma1, mu2, sigma2) from stored statistics.

Foundation features: `foundation_features(term_or_backbone)` reads a frozen ViT
(RETFound, RETFound-DINOv2, our fundus MAE, a custom ViT): images are resized
to the model's input size (bilinear, antialiased when shrinking: this is an
evaluation metric, so no aliasing; the loss term itself resizes without
antialias, as the paper's code did), ImageNet-normalised if the term is, run
through all blocks, the final LayerNorm applied (the encoder output its
pretraining saw), and the patch tokens averaged (CLS excluded). Mean pooling
rather than the CLS token because in MAE pretraining (RETFound-MAE, fundus MAE)
no loss reads the CLS token; RETFound's own fine-tuning pools the same way.
pool="cls" takes the CLS token instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from ablate.checks import check_images, check_same_shape, check_unit_range, finite_float64
from ablate.evaluate.kid import KID_SUBSET_SIZE, KID_SUBSETS, kid_subset_values
from ablate.losses.structural import MS_SSIM_MIN_SIDE, WINDOW, ms_ssim, ssim
from ablate.metric_info import Better, MetricInfo

if TYPE_CHECKING:
    from ablate.backbones.retfound import FrozenViT
    from ablate.losses.perceptual import LPIPSLoss

# pair_metrics' whole-image values (black surround included) are written as `<name>_whole`.
PSNR_WHOLE = MetricInfo("psnr_whole", Better.HIGHER, unit="dB", about="PSNR over the whole image")
SSIM_WHOLE = MetricInfo("ssim_whole", Better.HIGHER, about="SSIM over the whole image")
MS_SSIM_WHOLE = MetricInfo("ms_ssim_whole", Better.HIGHER, about="MS-SSIM over the whole image")
LPIPS = MetricInfo("lpips", Better.LOWER, about="LPIPS-VGG16 distance (the paper's perceptual metric)")
LPIPS_RANDOM = MetricInfo("lpips[random-vgg]", Better.LOWER, may_vote=False,
                          about="LPIPS on a randomly initialised VGG16: a control, no measure of faithfulness")
FID = MetricInfo("fid", Better.LOWER, per_set=True, about="Frechet distance in the FID Inception's pool features")
FD = MetricInfo("fd_", Better.LOWER, per_set=True, family=True,
                about="Frechet distance in a foundation model's features (fd_<model>)")
PAIR_METRICS = (PSNR_WHOLE, SSIM_WHOLE, MS_SSIM_WHOLE, LPIPS, LPIPS_RANDOM)
SET_METRICS = (FID, FD)

SQRTM_EPS = 1e-6  # pytorch-fid's offset for the sqrtm formula
POOLS = ("mean", "cls")

Extractor = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- per-pair metrics


def _check_pair(x: torch.Tensor, x_hat: torch.Tensor) -> None:
    # RGB only: an edge channel must be dropped before evaluating.
    check_images(x, "pair_metrics: target x", channels=3, min_side=WINDOW)
    check_images(x_hat, "pair_metrics: reconstruction x_hat", channels=3, min_side=WINDOW)
    check_same_shape(x, x_hat, "pair_metrics")
    check_unit_range(x, "pair_metrics: target x")


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR per image, (B,), in dB; MSE in float64 over channels and pixels; +inf where x == y."""
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse)).to(x.dtype)


def _lpips_key(lpips: nn.Module) -> str:
    from ablate.losses.perceptual import LPIPSLoss

    if not isinstance(lpips, LPIPSLoss):
        raise ValueError(
            f"pair_metrics: `lpips` must be an ablate LPIPSLoss (LOSSES.build('lpips', ...)), got {type(lpips).__name__}"
        )
    pretrained = bool(lpips.vgg.pretrained)
    expected = "lpips" if pretrained else "lpips[random-vgg]"
    if lpips.tag != expected:
        # A tag that disagrees with the trunk would report random weights as LPIPS (or the reverse).
        raise ValueError(
            f"pair_metrics: LPIPS module tagged {lpips.tag!r} but its VGG16 trunk is "
            f"{'pretrained' if pretrained else 'random'} ({lpips.vgg.source}); expected tag {expected!r}"
        )
    return expected


def pair_metrics(x: torch.Tensor, x_hat: torch.Tensor, lpips: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Per-image fidelity of x_hat to x: {"psnr", "ssim", ["ms_ssim"], [lpips tag]} -> (B,) tensors.

    x in [0, 1]; x_hat is clamped to [0, 1]. ms_ssim only for images >= 176 px a
    side; LPIPS only when a module is given, keyed by its tag (see module doc).
    """
    _check_pair(x, x_hat)
    key = _lpips_key(lpips) if lpips is not None else None
    with torch.no_grad():
        x = x.detach().clamp(0, 1)
        y = x_hat.detach().clamp(0, 1)
        out = {"psnr": psnr(x, y), "ssim": ssim(x, y)}
        if min(x.shape[-2:]) >= MS_SSIM_MIN_SIDE:
            out["ms_ssim"] = ms_ssim(x, y)
        if key is not None:
            out[key] = cast("LPIPSLoss", lpips).lpips_distance(x, y)  # cast: _lpips_key refused any other module
    return out


# ----------------------------------------------------------------------------- Fréchet distance


def _psd_factor(sigma: np.ndarray) -> np.ndarray:
    """L with L L^T = sigma for a symmetric PSD matrix (eigh; tiny negative eigenvalues set to 0)."""
    w, v = scipy.linalg.eigh((sigma + sigma.T) / 2)
    return v * np.sqrt(np.clip(w, 0, None))


def _frechet_from_factors(mu1: np.ndarray, l1: np.ndarray, mu2: np.ndarray, l2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2) for S = L L^T; tr sqrt(S1 S2) = ||L1^T L2||_*."""
    diff = mu1 - mu2
    tr_sqrt = scipy.linalg.svdvals(l1.T @ l2).sum()
    return float(diff @ diff + np.sum(l1 * l1) + np.sum(l2 * l2) - 2 * tr_sqrt)


def _sqrtm_trace(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float:
    """pytorch-fid's tr sqrtm(S1 S2): eps * I offset if not finite, real part, large imaginary parts raise."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        if imag > 1e-3:
            raise ValueError(f"frechet_distance: sqrtm(S1 S2) has an imaginary component {imag:.3g}")
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance(mu1, sigma1, mu2, sigma2, method: str = "eigh", eps: float = SQRTM_EPS) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), float64.

    method "eigh" (default): trace term as the nuclear norm of L1^T L2 with
    L = eigenvector factors, exact for singular covariances, no offset.
    method "sqrtm": pytorch-fid's formula with scipy.linalg.sqrtm (slow at 2048-d).
    """
    mu1, mu2 = finite_float64(mu1, "frechet_distance: mu1"), finite_float64(mu2, "frechet_distance: mu2")
    sigma1, sigma2 = finite_float64(sigma1, "frechet_distance: sigma1"), finite_float64(sigma2, "frechet_distance: sigma2")
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"frechet_distance: expected means (D,) and covariances (D, D) of one D, got {mu1.shape}, "
            f"{sigma1.shape}, {mu2.shape}, {sigma2.shape}"
        )
    if method == "eigh":
        return _frechet_from_factors(mu1, _psd_factor(sigma1), mu2, _psd_factor(sigma2))
    if method == "sqrtm":
        diff = mu1 - mu2
        return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * _sqrtm_trace(sigma1, sigma2, eps))
    raise ValueError(f"frechet_distance: unknown method {method!r}; valid: 'eigh', 'sqrtm'")


def _sample_factor(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and a factor L of the sample covariance (ddof 1): thin centred data when n <= D."""
    n, d = feats.shape
    mu = feats.mean(0)
    centred = feats - mu
    if n <= d:
        return mu, centred.T / math.sqrt(n - 1)
    return mu, _psd_factor(centred.T @ centred / (n - 1))


def frechet_distance_from_samples(real, fake) -> float:
    """Fréchet distance between the Gaussians fitted to two (n, D) feature sets (ddof-1 covariance)."""
    x, y = finite_float64(real, "frechet_distance: real"), finite_float64(fake, "frechet_distance: fake")
    mu1, l1 = _sample_factor(x)
    mu2, l2 = _sample_factor(y)
    return _frechet_from_factors(mu1, l1, mu2, l2)


# ----------------------------------------------------------------------------- accumulating metric


class FrechetDistance:
    """FID / FD (and KID) between accumulated real and generated image sets.

    extractor: callable (B, 3, H, W) in [0, 1] -> (B, D), e.g. FIDInception() or
    foundation_features(term). name: defaults to extractor.name; "inception" gives
    keys fid / kid, any other name fd_<name> / kid_<name>.
    """

    def __init__(self, extractor: Extractor, name: str | None = None, kid: bool = True,
                 kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE, seed: int = 0):
        if not callable(extractor):
            raise ValueError(f"FrechetDistance: extractor must be callable (B, 3, H, W) -> (B, D), got {extractor!r}")
        name = name if name is not None else getattr(extractor, "name", None)
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ValueError(f"FrechetDistance: need a non-empty name without spaces (got {name!r}); "
                             "pass name= or give the extractor a `name` attribute")
        if kid_subsets < 1 or kid_subset_size < 2:
            raise ValueError(f"FrechetDistance: kid_subsets >= 1 and kid_subset_size >= 2 required, "
                             f"got {kid_subsets}, {kid_subset_size}")
        self.extractor = extractor
        self.name = name
        self.key = "fid" if name == "inception" else f"fd_{name}"
        self.kid_key = "kid" if name == "inception" else f"kid_{name}"
        self.kid = kid
        self.kid_subsets = kid_subsets
        self.kid_subset_size = kid_subset_size
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        self._feats: dict[bool, list[torch.Tensor]] = {True: [], False: []}
        self._dim: int | None = None

    def update(self, images: torch.Tensor, real: bool) -> None:
        """Add a batch of images (B, 3, H, W) in [0, 1] to the real or the generated set."""
        if not isinstance(real, bool):
            raise ValueError(f"FrechetDistance.update: `real` must be True or False, got {real!r}")
        with torch.no_grad():
            feats = self.extractor(images)
        self.update_features(feats, real)

    def update_features(self, features: torch.Tensor, real: bool) -> None:
        """Add precomputed (B, D) features (e.g. a cached real set) to one set."""
        if not isinstance(real, bool):
            raise ValueError(f"FrechetDistance.update_features: `real` must be True or False, got {real!r}")
        if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] == 0:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"FrechetDistance[{self.name}]: features must be a non-empty (B, D) tensor, got {shape}")
        if self._dim is not None and features.shape[1] != self._dim:
            raise ValueError(f"FrechetDistance[{self.name}]: feature dimension {features.shape[1]} differs from "
                             f"the {self._dim} accumulated so far")
        f = features.detach().to("cpu", torch.float64)
        if not torch.isfinite(f).all():
            raise ValueError(f"FrechetDistance[{self.name}]: features contain NaN or inf")
        self._dim = f.shape[1]
        self._feats[real].append(f)

    @property
    def num_real(self) -> int:
        return sum(f.shape[0] for f in self._feats[True])

    @property
    def num_fake(self) -> int:
        return sum(f.shape[0] for f in self._feats[False])

    def features(self, real: bool) -> torch.Tensor:
        """The accumulated (n, D) float64 features of one set."""
        if not self._feats[real]:
            return torch.zeros(0, self._dim or 0, dtype=torch.float64)
        return torch.cat(self._feats[real])

    def compute(self) -> dict[str, float]:
        """{key: Fréchet distance, kid_key: KID [, kid_key + '_std']} from everything accumulated."""
        counts = {"real": self.num_real, "generated": self.num_fake}
        short = {k: n for k, n in counts.items() if n < 2}
        if short:
            raise ValueError(
                f"FrechetDistance[{self.name}]: need at least 2 samples in each set, have "
                + ", ".join(f"{n} {k}" for k, n in counts.items())
                + " (add them with update(images, real=True/False))"
            )
        x, y = self.features(True).numpy(), self.features(False).numpy()
        out = {self.key: frechet_distance_from_samples(x, y)}
        if self.kid:
            vals = kid_subset_values(x, y, self.kid_subsets, self.kid_subset_size, self.seed)
            out[self.kid_key] = float(vals.mean())
            if len(vals) > 1:
                out[f"{self.kid_key}_std"] = float(vals.std())  # ddof 0, as torchmetrics
        return out


# ----------------------------------------------------------------------------- foundation models


class FoundationFeatures(nn.Module):
    """(B, 3, H, W) in [0, 1] -> (B, C) pooled final-layer tokens of a frozen ViT (see module doc)."""
    mean: torch.Tensor  # buffers (register_buffer in __init__), declared for type checkers
    std: torch.Tensor

    def __init__(self, backbone: FrozenViT, name: str, imagenet_norm: bool = False, pool: str = "mean"):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"foundation_features: unknown pool {pool!r}; valid: {POOLS}")
        from ablate.losses.foundation import IMAGENET_MEAN, IMAGENET_STD

        self.backbone = backbone
        self.name = name
        self.imagenet_norm = imagenet_norm
        self.pool = pool
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @property
    def input_size(self) -> int:
        return self.backbone.img_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, f"foundation_features[{self.name}]", channels=3, finite=False)
        check_unit_range(x, f"foundation_features[{self.name}]")
        x = x.to(self.mean.device, torch.float32).clamp(0, 1)
        s = self.input_size
        if tuple(x.shape[-2:]) != (s, s):
            shrink = x.shape[-2] > s or x.shape[-1] > s
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=shrink)
        if self.imagenet_norm:
            x = (x - self.mean) / self.std
        with torch.no_grad():
            h = self.backbone.tokens(x, (self.backbone.depth,))[0]
            h = self.backbone.vit.norm(h)
        return h[:, 1:].mean(1) if self.pool == "mean" else h[:, 0]


def foundation_features(term_or_backbone: nn.Module, name: str | None = None, pool: str = "mean",
                        imagenet_norm: bool | None = None) -> FoundationFeatures:
    """Adapt a FoundationLoss term or a FrozenViT to the (B, 3, H, W) -> (B, D) extractor interface.

    From a term: its backbone, its ImageNet-normalisation setting and its model
    name (tag foundation[retfound] -> "retfound"). A bare FrozenViT needs `name`.
    Random weights always carry "[random]" in the name (fd_custom[random]).
    """
    from ablate.backbones.retfound import FrozenViT
    from ablate.losses.foundation import FoundationLoss

    if isinstance(term_or_backbone, FoundationLoss):
        backbone = term_or_backbone.backbone
        if imagenet_norm is None:
            imagenet_norm = term_or_backbone.imagenet_norm
        if name is None:
            tag = term_or_backbone.tag  # foundation[<model>] or foundation[<model>|random]
            name = tag[len("foundation["):-1].split("|")[0]
    elif isinstance(term_or_backbone, FrozenViT):
        backbone = term_or_backbone
        if name is None:
            raise ValueError("foundation_features: a bare FrozenViT needs a `name` (e.g. 'retfound')")
    else:
        raise ValueError(f"foundation_features: expected a FoundationLoss or a FrozenViT, got "
                         f"{type(term_or_backbone).__name__}")
    if not backbone.pretrained and "random" not in name:
        name = f"{name}[random]"
    return FoundationFeatures(backbone, name, bool(imagenet_norm), pool)
