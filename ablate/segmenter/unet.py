"""The vessel U-Net behind the `Segmenter` interface (ablate.segmenter.protocol).

U-Net (`UNet`, `UNetSegmenter`, name "unet:<file stem>"). Input: the RGB image, or
its CLAHE'd green in three channels (the file's input normalisation, input_norm.py),
each channel standardised per image over its FOV pixels (mean 0, sd 1; the
surround set to 0). This fixed preprocessing makes the network blind to global
brightness/contrast shifts of a channel, which reconstructions often have. The
statistics come from the whole image, also when training on patches (the
training stream computes them before cropping, with `fov_stats_numpy`, the same
formula as `fov_stats`). Output: vessel logits; `predict` applies the sigmoid
and `threshold` is 0.5. A model remembers the image size it was trained at
(`size`); `predict` resamples other sizes to it and the probabilities back, so
vessel widths are what the network learnt.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ablate.errors import InvalidInput
from ablate.segmenter.input_norm import InputNorm, input_norm, normalise_image
from ablate.segmenter.inputs import check_segmenter_inputs, fov_from_images

DEFAULT_ARCH = {"base": 16, "levels": 4, "norm": "batch"}
STD_EPS = 1e-3  # floor of a channel's sd (a flat channel stays finite)


# ----------------------------------------------------------------------------- inputs


def fov_stats(images: torch.Tensor, fov: torch.Tensor) -> torch.Tensor:
    """(B, 6): per-channel mean then sd (population, floored at STD_EPS) over FOV pixels."""
    x = images[:, :3].float()
    w = fov.to(x.dtype).unsqueeze(1)
    n = w.sum((2, 3)).clamp_min(1)
    mean = (x * w).sum((2, 3)) / n
    var = ((x - mean[..., None, None]) ** 2 * w).sum((2, 3)) / n
    return torch.cat([mean, var.sqrt().clamp_min(STD_EPS)], 1)


def fov_stats_numpy(image: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """`fov_stats` of one (H, W, 3) uint8 image and (H, W) bool FOV, as float32 (6,)."""
    px = image[fov].astype(np.float64) / 255 if fov.any() else np.zeros((1, 3))
    return np.concatenate([px.mean(0), np.maximum(px.std(0), STD_EPS)]).astype(np.float32)


def standardize(images: torch.Tensor, fov: torch.Tensor, stats: torch.Tensor | None = None) -> torch.Tensor:
    """The U-Net's input: channels standardised by `stats` (default: this image's FOV stats), 0 outside the FOV."""
    if stats is None:
        stats = fov_stats(images, fov)
    x = (images[:, :3].float() - stats[:, :3, None, None]) / stats[:, 3:, None, None]
    return x * fov.unsqueeze(1).to(x.dtype)


# ----------------------------------------------------------------------------- U-Net


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(max(g for g in (8, 4, 2, 1) if channels % g == 0), channels)
    raise InvalidInput(f"norm must be 'batch' or 'group', got {kind!r}")


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, norm: str):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), _norm(norm, cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), _norm(norm, cout), nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net: `levels` resolutions with base, 2 base, 4 base, ... channels; max-pool down,
    transposed-conv up, skip concatenation; two 3x3 conv + norm + ReLU per stage; 1x1 head
    to one logit. Input (B, 3, H, W) standardised (see `standardize`), H and W multiples
    of 2**(levels-1); output (B, H, W) logits. base 16, levels 4: 0.48 M parameters."""

    def __init__(self, base: int = 16, levels: int = 4, norm: str = "batch", in_channels: int = 3):
        super().__init__()
        if not (isinstance(base, int) and base >= 1 and isinstance(levels, int) and levels >= 2):
            raise InvalidInput(f"UNet needs integer base >= 1 and levels >= 2, got base={base!r}, levels={levels!r}")
        _norm(norm, base)  # validates `norm`
        self.levels = levels
        widths = [base * 2**i for i in range(levels)]
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.down.append(DoubleConv(c, w, norm))
            c = w
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(c, w, 2, stride=2))
            self.dec.append(DoubleConv(2 * w, w, norm))
            c = w
        self.head = nn.Conv2d(c, 1, 1)

    @property
    def multiple(self) -> int:
        return 2 ** (self.levels - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.multiple
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(f"UNet input {tuple(x.shape[-2:])} must be a multiple of {m} px (pad it; `predict` does)")
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1])):
            x = dec(torch.cat([up(x), skip], 1))
        return self.head(x)[:, 0]


def build_unet(arch: dict | None = None) -> UNet:
    a = {**DEFAULT_ARCH, **(arch or {})}
    unknown = set(a) - set(DEFAULT_ARCH)
    if unknown:
        raise InvalidInput(f"unknown U-Net arch keys {sorted(unknown)}; valid: {sorted(DEFAULT_ARCH)}")
    return UNet(**a)


def unet_logits(model: nn.Module, images: torch.Tensor, fov: torch.Tensor, stats: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of (B, 3, H, W) images of any size: standardised, zero-padded to the model's multiple, cropped back."""
    x = standardize(images, fov, stats)
    h, w = x.shape[-2:]
    m = cast(UNet, model.module if hasattr(model, "module") else model).multiple  # cast: a UNet, DDP-wrapped in training
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return model(x)[:, :h, :w]


def normalise_batch(images: torch.Tensor, fov: torch.Tensor, norm: InputNorm) -> torch.Tensor:
    """(B, 3, H, W) float images in [0, 1] in the input normalisation `norm`: through 8 bits and
    `input_norm.normalise_image` image by image, as the training stream does with its PNGs
    (an 8-bit image comes back as it was)."""
    if norm is InputNorm.RGB:
        return images
    u8 = (images[:, :3].detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    f = fov.detach().bool().cpu().numpy()
    out = np.stack([normalise_image(u8[i], f[i], norm) for i in range(u8.shape[0])])
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(images.device, torch.float32) / 255


class UNetSegmenter:
    """A trained U-Net behind the `Segmenter` interface (see the module docstring).

    Args:
        model: the network.
        name: what results call it ("unet:<file stem>").
        size: the image side it was trained at (others are resampled to it and back).
        meta: the file's metadata (threshold, input normalisation, metrics, ...).
        threshold: overrides the file's.
        norm: the input normalisation; default the file's ("input"), rgb for files from before it.
    """

    def __init__(self, model: UNet, name: str, size: int | None = None, meta: dict | None = None,
                 threshold: float | None = None, norm: InputNorm | str | None = None):
        self.model = model.eval()
        self.name = name
        self.size = size
        self.meta = meta or {}
        # Chosen on the val split at training (`threshold.py`); files from before that carry none: 0.5.
        self.threshold = float(threshold if threshold is not None else self.meta.get("threshold", 0.5))
        self.norm = input_norm(norm if norm is not None else self.meta.get("input", InputNorm.RGB.value))

    @property
    def metrics(self) -> dict:
        return dict(self.meta.get("metrics") or {})

    def levels(self, images: torch.Tensor, fov: torch.Tensor | None = None) -> None:
        """None: one fixed threshold for every image (the ridge fallback has one per image)."""
        return

    @torch.no_grad()
    def predict(self, images: torch.Tensor, fov: torch.Tensor | None = None, levels: None = None,
                batch_size: int = 8) -> torch.Tensor:
        if levels is not None:
            raise ValueError("the U-Net has one threshold for every image; it takes no per-image levels")
        check_segmenter_inputs(images, fov)
        fov = fov_from_images(images) if fov is None else fov.bool()
        self.model.to(images.device).eval()
        out = []
        for k in range(0, images.shape[0], batch_size):
            x, f = images[k : k + batch_size, :3].float(), fov[k : k + batch_size]
            h, w = x.shape[-2:]
            if self.size and (h, w) != (self.size, self.size):
                # Vessel widths in pixels are what the network learnt at its training size.
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
                f_in = F.interpolate(f[:, None].float(), size=(self.size, self.size), mode="nearest")[:, 0] > 0.5
                # rgb: the statistics of the image as given; otherwise of its normalisation at the
                # training size, where the training stream took them (after normalising).
                stats = fov_stats(images[k : k + batch_size, :3].float(), f) if self.norm is InputNorm.RGB else None
                p = torch.sigmoid(unet_logits(self.model, normalise_batch(x, f_in, self.norm), f_in, stats))
                p = F.interpolate(p[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
            else:
                p = torch.sigmoid(unet_logits(self.model, normalise_batch(x, f, self.norm), f))
            out.append(p.clamp(0, 1) * f)
        return torch.cat(out)
