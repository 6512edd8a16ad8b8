"""Mixed precision for the training step and validation (`train.precision`).

`auto` is bf16 autocast on CUDA and fp32 on the CPU. An explicit `bf16` on the CPU is
allowed and said (CPU autocast is correct everywhere, but slower than fp32 unless the
CPU has native bf16: AVX512-BF16 or AMX). `fp16` needs CUDA and runs with a
GradScaler; it is refused on the CPU rather than quietly run in another precision.

What stays fp32 whatever the setting, and why (each place says so in the code):
- the quantiser's codebook distances and its straight-through path
  (`models/quantize.py`): ||z||^2 - 2 z.e + ||e||^2 cancels catastrophically in
  bf16's 8-bit mantissa, so argmin would pick different codes than fp32;
- the adaptive weight's gradient norms (`losses/composite.py`): the gradients are
  taken at the fp32 decoder weight and their norms summed in fp32;
- the loss reductions: every term's value is returned as an fp32 scalar, and the
  pixel, SSIM/MS-SSIM and edge terms (cheap, and SSIM's sigma = E[xy] - E[x]E[y]
  cancels) run with autocast off; the feature networks (VGG of LPIPS, the ViT of
  the foundation term, the PatchGAN) run under autocast and their distances are
  reduced in fp32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from ablate.specs import PRECISIONS, ConfigError


class PrecisionError(ConfigError):
    """A precision this device cannot run; the message says what to use instead."""


def cpu_has_native_bf16() -> bool:
    """True when oneDNN reports bf16 support on this CPU (AVX512-BF16 / AMX)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class Precision:
    name: str  # bf16 | fp16 | fp32, resolved for the device
    device_type: str  # "cuda" | "cpu"
    note: str = ""  # said once at start-up when the choice deserves a remark

    @property
    def dtype(self):
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.name]

    def autocast(self):
        """The context the forward passes run in (a no-op for fp32)."""
        import torch

        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self):
        """A GradScaler for fp16 (its 5-bit exponent underflows small gradients), else None:
        bf16 has fp32's exponent range and needs none."""
        import torch

        return torch.amp.GradScaler(self.device_type) if self.name == "fp16" else None


def resolve_precision(requested: str, device_type: str) -> Precision:
    """`requested` from `train.precision`; `device_type` the worker's torch device type."""
    if requested not in PRECISIONS:
        raise PrecisionError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    cuda = device_type == "cuda"
    if requested == "auto":
        requested = "bf16" if cuda else "fp32"
        if cuda and not _cuda_bf16():
            raise PrecisionError("train.precision auto: this CUDA device has no bf16; set fp16 (with a GradScaler) "
                                 "or fp32 explicitly")
        return Precision(requested, device_type)
    if requested == "fp16" and not cuda:
        raise PrecisionError(f"train.precision fp16 needs a CUDA device (fp16 with a GradScaler); this worker runs on "
                             f"{device_type}. Use bf16 or fp32 there.")
    if requested == "bf16" and cuda and not _cuda_bf16():
        raise PrecisionError("train.precision bf16: this CUDA device has no bf16 support; use fp16 or fp32")
    note = ""
    if requested == "bf16" and not cuda:
        native = cpu_has_native_bf16()
        note = ("bf16 autocast on the CPU, as asked: " + (
            "this CPU has native bf16" if native else
            "this CPU has no native bf16 (no AVX512-BF16/AMX), so it is emulated and slower than fp32"))
    return Precision(requested, device_type, note)


def _cuda_bf16() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()

