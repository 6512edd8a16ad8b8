"""Vessel segmenters that judge reconstructions: a small U-Net and a classical fallback.

Both follow one interface (`Segmenter`): a `name` that results carry, so a table
always says which segmenter drew its vessel maps; `predict(images, fov)` giving a
per-pixel vessel probability in [0, 1] (0 outside the field of view); and a
`threshold` above which a pixel counts as vessel.

U-Net (`UNet`, `UNetSegmenter`, name "unet:<file stem>"). Input: the RGB image,
each channel standardised per image over its FOV pixels (mean 0, sd 1; the
surround set to 0). This fixed preprocessing makes the network blind to global
brightness/contrast shifts of a channel, which reconstructions often have. The
statistics come from the whole image, also when training on patches (the
training stream computes them before cropping, with `fov_stats_numpy`, the same
formula as `fov_stats`). Output: vessel logits; `predict` applies the sigmoid
and `threshold` is 0.5. A model remembers the image size it was trained at
(`size`); `predict` resamples other sizes to it and the probabilities back, so
vessel widths are what the network learnt.

Classical fallback (`RidgeSegmenter` in ablate.segmenter.ridge, name "ridge:meijering+otsu" or
"ridge:frangi+otsu"), computed with scikit-image on the CPU (numpy), image by
image: green channel -> surround (and the FOV's outer 4 px at 512) filled with the
nearest fundus value (no rim edge; before issue 14, with the FOV mean, which drew a
vessel ring along the rim) -> CLAHE (`equalize_adapthist`, clip 0.01) -> ridge filter for dark ridges (sigmas
1, 2, 3 px at 512 px, scaled with the image side; Frangi's response square-rooted,
same ranking, as Otsu on its heavy tail keeps only the widest vessels) -> Otsu threshold `t` of the
response over the FOV eroded by 6 px (at 512; the rim's response stays out of
the histogram). Its "probability" is the response mapped piecewise linearly,
[0, t] -> [0, 0.5] and [t, max over the FOV] -> [0.5, 1]: strictly increasing,
so its ROC AUC is the ridge response's own, and `> 0.5` is exactly Otsu's
binary map (`threshold` = 0.5). It is not a calibrated probability.

Metrics (`evaluate_arrays`, `evaluate_split`): inside the FOV only, pooled over
all pixels of all images: Dice of `prob > threshold` against the manual mask,
ROC AUC of `prob` (Mann-Whitney rank statistic, ties counted half: `roc_auc`),
sensitivity, specificity, accuracy; plus the mean of per-image Dice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ablate.backbones.weights import ablate_weights_file
from ablate.backbones.weights_load import read_weights_file
from ablate.errors import InputMissing, InvalidInput
from ablate.segmenter.inputs import check_segmenter_inputs as _check_images
from ablate.segmenter.inputs import fov_from_images

__all__ = ["DEFAULT_WEIGHTS", "RidgeSegmenter", "Segmenter", "UNet", "UNetSegmenter", "build_unet", "dice",
           "evaluate_arrays", "evaluate_split", "fov_from_images", "fov_stats", "fov_stats_numpy", "format_metrics",
           "LabelledSplit", "load_labelled", "load_segmenter", "load_split", "predict_arrays", "roc_auc", "save_segmenter", "standardize", "unet_logits"]
from ablate.segmenter.ridge import RidgeSegmenter

FILE_VERSION = 1
DEFAULT_WEIGHTS = ablate_weights_file("vessel_unet")  # $ABLATE_CACHE/weights/vessel_unet.pth
TRAIN_COMMAND = "ablate segmenter train --data DIR"
DEFAULT_ARCH = {"base": 16, "levels": 4, "norm": "batch"}
STD_EPS = 1e-3  # floor of a channel's sd (a flat channel stays finite)


@runtime_checkable
class Segmenter(Protocol):
    name: str
    threshold: float

    def predict(self, images: torch.Tensor, fov: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) float RGB in [0, 1], optional (B, H, W) bool FOV -> (B, H, W) vessel probability."""
        ...


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
    m = (model.module if hasattr(model, "module") else model).multiple  # DDP-wrapped in training
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return model(x)[:, :h, :w]


class UNetSegmenter:
    """A trained U-Net behind the `Segmenter` interface (see the module docstring)."""

    def __init__(self, model: UNet, name: str, size: int | None = None, meta: dict | None = None,
                 threshold: float | None = None):
        self.model = model.eval()
        self.name = name
        self.size = size
        self.meta = meta or {}
        # Chosen on the val split at training (`threshold.py`); files from before that carry none: 0.5.
        self.threshold = float(threshold if threshold is not None else self.meta.get("threshold", 0.5))

    @property
    def metrics(self) -> dict:
        return dict(self.meta.get("metrics") or {})

    def levels(self, images: torch.Tensor, fov: torch.Tensor | None = None) -> None:
        """None: one fixed threshold for every image (the ridge fallback has one per image)."""
        return None

    @torch.no_grad()
    def predict(self, images: torch.Tensor, fov: torch.Tensor | None = None, levels: None = None,
                batch_size: int = 8) -> torch.Tensor:
        if levels is not None:
            raise ValueError("the U-Net has one threshold for every image; it takes no per-image levels")
        _check_images(images, fov)
        fov = fov_from_images(images) if fov is None else fov.bool()
        self.model.to(images.device).eval()
        out = []
        for k in range(0, images.shape[0], batch_size):
            x, f = images[k : k + batch_size, :3].float(), fov[k : k + batch_size]
            h, w = x.shape[-2:]
            if self.size and (h, w) != (self.size, self.size):
                # Vessel widths in pixels are what the network learnt at its training size.
                stats = fov_stats(x, f)
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
                f_in = F.interpolate(f[:, None].float(), size=(self.size, self.size), mode="nearest")[:, 0] > 0.5
                p = torch.sigmoid(unet_logits(self.model, x, f_in, stats))
                p = F.interpolate(p[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
            else:
                p = torch.sigmoid(unet_logits(self.model, x, f))
            out.append(p.clamp(0, 1) * f)
        return torch.cat(out)


# ----------------------------------------------------------------------------- files


def save_segmenter(path: str | os.PathLike, model: nn.Module, arch: dict, *, size: int, trained_on: str,
                   metrics: dict | None = None, training: dict | None = None,
                   trained_ids: dict[str, str] | None = None, threshold: float = 0.5,
                   threshold_rule: str = "0.5 (fixed)") -> Path:
    """Write a U-Net file atomically: {"model", "arch", "size", "trained_on", "trained_ids", "metrics",
    "training", "threshold", "threshold_rule", "version"}; trained_ids = {content id: source} of
    every training image (the leakage guard, ablate.segmenter.leakage); threshold: the probability
    above which a pixel is vessel, and how it was chosen."""
    from ablate.io import atomic_path

    path = Path(path)
    state = {k: v.detach().cpu() for k, v in (model.module if hasattr(model, "module") else model).state_dict().items()}
    payload = {"version": FILE_VERSION, "model": state, "arch": dict(arch), "size": int(size),
               "trained_on": str(trained_on), "metrics": dict(metrics or {}), "training": dict(training or {}),
               "threshold": float(threshold), "threshold_rule": str(threshold_rule)}
    if trained_ids is not None:
        payload["trained_ids"] = {str(k): str(v) for k, v in trained_ids.items()}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_segmenter(spec: str | os.PathLike = DEFAULT_WEIGHTS, device: str | torch.device = "cpu") -> Segmenter:
    """"ridge" (= "ridge:meijering") or "ridge:frangi" -> the classical fallback; else a
    U-Net file written by `ablate segmenter train`."""
    s = str(spec)
    if s == "ridge" or s.startswith("ridge:"):
        family = s.split(":", 1)[1] if ":" in s else "meijering"
        return RidgeSegmenter(family.removesuffix("+otsu"))
    path = Path(s).expanduser()
    if not path.is_file():
        raise InputMissing(
            f"{path}: no vessel segmenter weights there; create them with `{TRAIN_COMMAND} --out {path}` "
            f"(DIR: DRIVE prepared by `ablate prepare`), or use the classical fallback 'ridge'"
        )
    # one line naming the file when it is not a torch file of tensors (never torch's weights_only advice)
    ckpt = read_weights_file(path, "a vessel segmenter file",
                             f"Train one with `{TRAIN_COMMAND} --out {path}`, or use the classical fallback 'ridge'.")
    if not isinstance(ckpt, dict) or "model" not in ckpt or "arch" not in ckpt:
        raise InvalidInput(f"{path}: not a vessel segmenter file written by `ablate segmenter train` "
                           "(keys model, arch missing)")
    model = build_unet(ckpt["arch"])
    model.load_state_dict(ckpt["model"])
    meta = {k: v for k, v in ckpt.items() if k != "model"}
    return UNetSegmenter(model.to(device), f"unet:{path.stem}", size=ckpt.get("size"), meta=meta)


# ----------------------------------------------------------------------------- metrics


def roc_auc(scores, labels) -> float:
    """ROC AUC = P(score of a random positive > that of a random negative), ties counting 1/2
    (Mann-Whitney U from average ranks)."""
    from scipy.stats import rankdata

    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in size ({s.size} vs {y.size})")
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("ROC AUC needs both positive and negative pixels")
    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def dice(pred, target) -> float:
    p, t = np.asarray(pred, bool), np.asarray(target, bool)
    denom = int(p.sum()) + int(t.sum())
    return 1.0 if denom == 0 else 2.0 * int((p & t).sum()) / denom


def evaluate_arrays(prob: np.ndarray, vessel: np.ndarray, fov: np.ndarray, threshold: float) -> dict[str, float]:
    """Metrics inside the FOV of (N, H, W) probabilities against (N, H, W) manual masks."""
    prob, vessel, fov = np.asarray(prob), np.asarray(vessel, bool), np.asarray(fov, bool)
    pred = prob > threshold
    s, y, b = prob[fov], vessel[fov], pred[fov]
    tp, fp, fn = int((b & y).sum()), int((b & ~y).sum()), int((~b & y).sum())
    tn = int(y.size - tp - fp - fn)
    per_image = [dice(pred[i][fov[i]], vessel[i][fov[i]]) for i in range(prob.shape[0])]
    return {
        "dice": dice(b, y),
        "auc": roc_auc(s, y),
        "dice_mean_per_image": float(np.mean(per_image)),
        "sensitivity": tp / max(1, tp + fn),
        "specificity": tn / max(1, tn + fp),
        "accuracy": (tp + tn) / max(1, y.size),
        "n_images": int(prob.shape[0]),
    }


@dataclass(frozen=True)
class LabelledSplit:
    """The images of a prepared split that have a manual vessel mask, and the ones skipped."""
    images: np.ndarray  # uint8 (N, S, S, 3)
    fov: np.ndarray  # bool (N, S, S)
    vessel: np.ndarray  # bool (N, S, S)
    sources: list[str]
    ids: list[str]
    skipped: list[str]  # sources of the split's images without a vessel mask


def load_labelled(data_dir: str | os.PathLike, split: str = "test") -> LabelledSplit:
    """The split's images with vessel masks; those without are named in `skipped`. None
    with a mask is an error (nothing to score)."""
    import pyarrow.parquet as pq

    from ablate.data.preprocess import decode_png
    from ablate.data.shards import DatasetError, shard_paths

    rows = []
    for p in shard_paths(data_dir, split):
        rows += pq.read_table(p, columns=["id", "source", "image", "fov", "vessel"]).to_pylist()
    skipped = [r["source"] for r in rows if r["vessel"] is None]
    rows = [r for r in rows if r["vessel"] is not None]
    if not rows:
        raise DatasetError(f"{data_dir}: none of the {len(skipped)} image(s) of the {split} split has a vessel mask; "
                           "segmenters are judged on data with manual masks (DRIVE-like)")
    return LabelledSplit(images=np.stack([decode_png(r["image"]) for r in rows]),
                         fov=np.stack([decode_png(r["fov"]) > 127 for r in rows]),
                         vessel=np.stack([decode_png(r["vessel"]) > 127 for r in rows]),
                         sources=[r["source"] for r in rows], ids=[r["id"] for r in rows], skipped=skipped)


def load_split(data_dir: str | os.PathLike, split: str = "test") -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(images uint8 (N, S, S, 3), fov bool, vessel bool, sources) of a prepared split whose every
    image has a vessel mask (training and threshold choice need them all)."""
    import pyarrow.parquet as pq

    from ablate.data.preprocess import decode_png
    from ablate.data.shards import DatasetError, shard_paths

    rows = []
    for p in shard_paths(data_dir, split):
        rows += pq.read_table(p, columns=["source", "image", "fov", "vessel"]).to_pylist()
    missing = [r["source"] for r in rows if r["vessel"] is None]
    if missing:
        raise DatasetError(f"{data_dir}: {len(missing)} image(s) of the {split} split have no vessel mask "
                           f"(e.g. {missing[0]}); segmenters are trained and judged on DRIVE-like data with manual masks")
    images = np.stack([decode_png(r["image"]) for r in rows])
    fov = np.stack([decode_png(r["fov"]) > 127 for r in rows])
    vessel = np.stack([decode_png(r["vessel"]) > 127 for r in rows])
    return images, fov, vessel, [r["source"] for r in rows]


def predict_arrays(seg: Segmenter, images: np.ndarray, fov: np.ndarray, batch_size: int = 4) -> np.ndarray:
    """Probabilities for (N, H, W, 3) uint8 images, `batch_size` at a time."""
    out = []
    for k in range(0, images.shape[0], batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[k : k + batch_size])).permute(0, 3, 1, 2).float() / 255
        out.append(seg.predict(x, torch.from_numpy(fov[k : k + batch_size])).cpu().numpy())
    return np.concatenate(out)


def evaluate_split(seg: Segmenter, data_dir: str | os.PathLike, split: str = "test") -> dict:
    """The segmenter's metrics on a prepared split's images that have a vessel mask (inside the
    FOV), with its name, threshold and the runtime; `skipped` names the images without a mask."""
    import time

    from ablate.segmenter.leakage import check_not_trained_on

    lab = load_labelled(data_dir, split)
    check_not_trained_on(seg, lab.ids, lab.sources, f"{data_dir} ({split} split)")
    t0 = time.perf_counter()
    prob = predict_arrays(seg, lab.images, lab.fov)
    seconds = time.perf_counter() - t0
    m = evaluate_arrays(prob, lab.vessel, lab.fov, seg.threshold)
    return {"segmenter": seg.name, "split": split, "data": str(Path(data_dir).resolve()),
            "image_size": int(lab.images.shape[1]), "threshold": float(seg.threshold), **m,
            "skipped": list(lab.skipped), "predict_seconds": round(seconds, 2)}


def format_metrics(m: dict) -> str:
    return (f"{m['segmenter']}: Dice {m['dice']:.4f} (mean per image {m['dice_mean_per_image']:.4f}), "
            f"ROC AUC {m['auc']:.4f}, sensitivity {m['sensitivity']:.4f}, specificity {m['specificity']:.4f}, "
            f"accuracy {m['accuracy']:.4f} on {m['n_images']} {m.get('split', '')} images inside the FOV"
            + (f" (threshold {m['threshold']:.2f})" if "threshold" in m else "")).replace("  ", " ")
