"""Fidelity inside the field of view: PSNR, SSIM and MS-SSIM over FOV pixels only.

A prepared fundus image is zero outside its circular field of view (~21 % of the
square at DRIVE's aspect). Those pixels are black in the target and, nearly, in
every reconstruction, so whole-image PSNR counts free zeros in its MSE and SSIM
averages windows of constant black that score 1. Inside the FOV:

  psnr      10 log10(1 / MSE), MSE over all channels of the FOV pixels (data range 1).
  ssim      skimage's Gaussian SSIM map (sigma 1.5, population covariance; the same
            map ablate.losses.structural.ssim averages), averaged over the FOV pixels
            at least 5 px (the window radius) from the image border (the pixels
            skimage's own crop keeps), then over channels. Windows centred within
            5 px of the rim still hold some black surround, which both images share;
            eroding the FOV by the window radius instead would leave no pixel at
            MS-SSIM's coarsest scale (16 px at 256), so one rule serves both. The
            reconstruction's pixels outside the FOV are replaced by the original's first,
            so those windows read the same surround in both images: what a reconstruction
            draws outside its FOV never moves ssim or ms_ssim.
  ms_ssim   the five-scale MS-SSIM (Wang et al. 2003, weights as ablate.losses.
            structural): at each scale the contrast-structure map (the SSIM map at
            the last) is averaged over that scale's FOV (the FOV 2 x 2 average-pooled
            per scale, a pixel in when at least half of it is FOV), within the same
            5 px crop. Only for images >= 176 px a side, as the whole-image version.

`pair_metrics_fov(x, x_hat, fov, lpips=None)` returns these under the plain names
(`psnr`, `ssim`, `ms_ssim`: the primary fidelity figures) and the whole-image values
of ablate.evaluate.fidelity.pair_metrics as `psnr_whole`, `ssim_whole`,
`ms_ssim_whole` (secondary). LPIPS stays a whole-image figure (its VGG sees the
rim either way) under its own name. A FOV with no interior pixel at some scale
raises ValueError rather than returning a mean of nothing.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ablate.checks import check_mask
from ablate.evaluate.fidelity import pair_metrics
from ablate.losses.structural import MS_SSIM_MIN_SIDE, MS_SSIM_WEIGHTS, WINDOW_RADIUS, ssim_maps
from ablate.metric_info import Better, MetricInfo

# Inside the FOV (the black surround is no part of the photograph): the fidelity primaries.
PSNR = MetricInfo("psnr", Better.HIGHER, unit="dB", about="PSNR inside the FOV")
SSIM = MetricInfo("ssim", Better.HIGHER, about="SSIM inside the FOV (windows wholly inside it)")
MS_SSIM = MetricInfo("ms_ssim", Better.HIGHER, about="MS-SSIM inside the FOV")
METRICS = (PSNR, SSIM, MS_SSIM)

WHOLE_SUFFIX = "_whole"
MASKED = ("psnr", "ssim", "ms_ssim")


def window_interior(fov: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool: FOV pixels at least the window radius (5 px) from the image border."""
    r = WINDOW_RADIUS
    keep = torch.zeros_like(fov, dtype=torch.bool)
    keep[:, r:-r, r:-r] = True
    return fov.bool() & keep


def _masked_mean(m: torch.Tensor, mask: torch.Tensor, what: str) -> torch.Tensor:
    """(B, C, H, W) map, (B, H, W) mask -> (B, C) mean over the mask's pixels."""
    n = mask.sum((-2, -1))
    if (n == 0).any():
        raise ValueError(f"{what}: the field of view has no pixel {WINDOW_RADIUS} px or more from the image "
                         f"border (FOV pixels per image: {n.tolist()})")
    w = mask[:, None].to(m.dtype)
    return (m * w).sum((-2, -1)) / n[:, None].to(m.dtype)


def psnr_fov(x: torch.Tensor, y: torch.Tensor, fov: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR per image over the FOV pixels (all channels), float64 MSE; +inf where they agree."""
    w = fov.bool()[:, None].expand_as(x).double()
    n = w.sum((1, 2, 3))
    if (n == 0).any():
        raise ValueError("psnr_fov: an image has an empty field of view")
    mse = ((x.double() - y.double()) ** 2 * w).sum((1, 2, 3)) / n
    return (10 * torch.log10(data_range**2 / mse)).to(x.dtype)


def ssim_fov(x: torch.Tensor, y: torch.Tensor, fov: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM per image, (B,), averaged over the FOV's window interior (see module doc)."""
    s, _ = ssim_maps(x, y, data_range)
    return _masked_mean(s, window_interior(fov), "ssim_fov").mean(1)


def ms_ssim_fov(x: torch.Tensor, y: torch.Tensor, fov: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """MS-SSIM per image, (B,), each scale's map averaged over that scale's FOV interior."""
    if min(x.shape[-2:]) < MS_SSIM_MIN_SIDE:
        raise ValueError(f"ms_ssim_fov needs images of at least {MS_SSIM_MIN_SIDE} px a side, got {tuple(x.shape[-2:])}")
    f = fov.float()
    factors = []
    for scale in range(len(MS_SSIM_WEIGHTS)):
        s, cs = ssim_maps(x, y, data_range)
        inner = window_interior(f >= 0.5)
        if scale == len(MS_SSIM_WEIGHTS) - 1:
            factors.append(torch.relu(_masked_mean(s, inner, f"ms_ssim_fov (scale {scale})")))
        else:
            factors.append(torch.relu(_masked_mean(cs, inner, f"ms_ssim_fov (scale {scale})")))
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
            f = F.avg_pool2d(f[:, None], 2)[:, 0]  # share of each block inside the FOV
    weights = x.new_tensor(MS_SSIM_WEIGHTS).view(-1, 1, 1)
    return torch.stack(factors).pow(weights).prod(0).mean(1)


def pair_metrics_fov(x: torch.Tensor, x_hat: torch.Tensor, fov, lpips=None) -> dict[str, torch.Tensor]:
    """FOV fidelity under the plain names, whole-image values as `<name>_whole` (see module doc).

    x (B, 3, H, W) in [0, 1]; x_hat clamped to [0, 1]; fov (B, H, W) bool (tensor or array).
    """
    whole = pair_metrics(x, x_hat, lpips)  # validates x and x_hat
    # a copy of an array (object-store arrays are read-only); a tensor is used as it is
    fov = (fov if isinstance(fov, torch.Tensor) else torch.tensor(np.array(fov, dtype=bool))).to(x.device)
    check_mask(fov, x, "pair_metrics_fov: fov")
    out = {(f"{k}{WHOLE_SUFFIX}" if k in MASKED else k): v for k, v in whole.items()}
    with torch.no_grad():
        a, b = x.detach().clamp(0, 1), x_hat.detach().clamp(0, 1)
        fov = fov.bool()
        # Outside the FOV the reconstruction is not judged: there it takes the original's pixels,
        # so an SSIM window near the rim compares the same surround on both sides (issue 27: grey
        # outside moved FOV SSIM from 0.714 to 0.668 with every FOV pixel unchanged).
        b = torch.where(fov[:, None], b, a)
        out["psnr"] = psnr_fov(a, b, fov)
        out["ssim"] = ssim_fov(a, b, fov)
        if "ms_ssim" + WHOLE_SUFFIX in out:
            out["ms_ssim"] = ms_ssim_fov(a, b, fov)
    return out
