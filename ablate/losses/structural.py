"""SSIM and MS-SSIM: per-image indices (B,) for evaluation, and loss terms 1 - mean index.

Definition (Wang et al. 2004, and skimage's Gaussian variant, so numbers can be
checked against `skimage.metrics.structural_similarity(a, b, data_range=1,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=...)`):
local statistics under a Gaussian window of sd 1.5 truncated at 3.5 sd
(11 x 11), reflect borders, population (not sample) covariance, K1 = 0.01,
K2 = 0.03; the SSIM map is cropped by (11 - 1) // 2 = 5 pixels on each side
before averaging, as skimage does, and averaged per channel, then over channels.

MS-SSIM (Wang, Simoncelli & Bovik 2003): the contrast-structure mean at scales
1-4 and the SSIM mean at scale 5, each per channel, raised to the weights
(0.0448, 0.2856, 0.3001, 0.2363, 0.1333) and multiplied; scales are 2x2 average
pools (an odd last row/column is dropped). A negative factor (anti-correlated
structure at a coarse scale) would make the fractional power undefined, so
each factor goes through relu first, as pytorch_msssim and torchmetrics'
normalize="relu" do. Images need at least 11 * 2**4 = 176 px a side, so the
coarsest scale still holds one full window.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ablate.checks import check_images, check_pair, check_same_shape
from ablate.edge_filters import gaussian_blur
from ablate.losses.base import ImageLoss
from ablate.losses.registry import LOSSES

K1, K2 = 0.01, 0.03
WINDOW_SIGMA = 1.5
WINDOW_TRUNCATE = 3.5
WINDOW_RADIUS = int(WINDOW_TRUNCATE * WINDOW_SIGMA + 0.5)  # 5, as scipy sizes the kernel
WINDOW = 2 * WINDOW_RADIUS + 1
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_MIN_SIDE = WINDOW * 2 ** (len(MS_SSIM_WEIGHTS) - 1)


def ssim_maps(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The SSIM map and the contrast-structure map, (B, C, H, W) each, uncropped (the
    FOV-restricted metrics in ablate.evaluate average them over their own pixels)."""
    c = x.shape[1]
    # One blur call for all five local moments.
    moments = gaussian_blur(torch.cat([x, y, x * x, y * y, x * y], 1), WINDOW_SIGMA, WINDOW_TRUNCATE)
    ux, uy, uxx, uyy, uxy = moments.split(c, 1)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    cs = (2 * vxy + c2) / (vx + vy + c2)
    return (2 * ux * uy + c1) / (ux * ux + uy * uy + c1) * cs, cs


def _ssim_and_cs(x: torch.Tensor, y: torch.Tensor, data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure term per image and channel, (B, C) each."""
    ssim_map, cs = ssim_maps(x, y, data_range)
    r = WINDOW_RADIUS
    crop = (..., slice(r, -r), slice(r, -r))
    return ssim_map[crop].mean(dim=(-2, -1)), cs[crop].mean(dim=(-2, -1))


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM per image, (B,): mean over the cropped map of each channel, then over channels."""
    check_same_shape(x, y, "ssim")
    check_images(x, "ssim", min_side=WINDOW, finite=False)
    return _ssim_and_cs(x, y, data_range)[0].mean(1)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """MS-SSIM per image, (B,), over 5 scales; needs images of at least MS_SSIM_MIN_SIDE px a side."""
    check_same_shape(x, y, "ms_ssim")
    check_images(x, "ms_ssim", min_side=MS_SSIM_MIN_SIDE, finite=False)
    factors = []
    for scale in range(len(MS_SSIM_WEIGHTS)):
        s, cs = _ssim_and_cs(x, y, data_range)
        if scale == len(MS_SSIM_WEIGHTS) - 1:
            factors.append(torch.relu(s))
        else:
            factors.append(torch.relu(cs))
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    weights = x.new_tensor(MS_SSIM_WEIGHTS).view(-1, 1, 1)
    return torch.stack(factors).pow(weights).prod(0).mean(1)


class SSIMLoss(ImageLoss):
    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        check_pair(x, x_hat, "ssim")
        return 1 - ssim(x, x_hat).mean()


class MSSSIMLoss(ImageLoss):
    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        check_pair(x, x_hat, "ms_ssim")
        return 1 - ms_ssim(x, x_hat).mean()


@LOSSES.register("ssim", "1 - SSIM (Gaussian 11x11 window, sigma 1.5; Wang et al. 2004)")
def ssim_loss() -> SSIMLoss:
    return SSIMLoss()


@LOSSES.register("ms_ssim", f"1 - MS-SSIM (5 scales, Wang et al. 2003; images >= {MS_SSIM_MIN_SIDE} px)")
def ms_ssim_loss() -> MSSSIMLoss:
    return MSSSIMLoss()
