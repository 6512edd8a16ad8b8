"""One optimisation step of the autoencoder (and its discriminators), in the trial's
precision: the forward passes under autocast, the backward through a GradScaler for
fp16. A free function, so the per-worker loop and the CPU tests run the same code."""

from __future__ import annotations

import torch

from ablate.losses import CompositeLoss
from ablate.runtime import Precision, average_gradients


def backward_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler=None, average: bool = False) -> None:
    """Backward and step; with fp16 through the GradScaler (which skips a step whose
    gradients overflowed). `average`: all-reduce the gradients first (the discriminator's:
    it is no DDP module)."""
    if scaler is None:
        loss.backward()
        if average:
            average_gradients(opt)
        opt.step()
        return
    scaler.scale(loss).backward()
    if average:
        scaler.unscale_(opt)  # average what the optimiser will see, not the scaled values
        average_gradients(opt)
    scaler.step(opt)


def train_step(model: torch.nn.Module, loss_fn: CompositeLoss, opt: torch.optim.Optimizer,
               d_opt: torch.optim.Optimizer | None, precision: Precision, scaler, x: torch.Tensor, step: int,
               last_layer: torch.Tensor | None, target: torch.Tensor | None = None):
    """(x_hat in fp32, aux, logs) of one generator step, then the discriminators' step.
    `target`: what x_hat must match, when it is not the input x (an edge map the model
    draws but does not read: models/edge_channel.py, role target_only)."""
    x_target = x if target is None else target
    with precision.autocast():
        x_hat, aux = model(x)
        loss, logs = loss_fn(x_target, x_hat, aux, step, last_layer)
    opt.zero_grad(set_to_none=True)
    backward_step(loss, opt, scaler)
    if d_opt is not None:
        with precision.autocast():
            d_loss, d_logs = loss_fn.discriminator_loss(x_target, x_hat, step)
        if d_loss is not None:
            d_opt.zero_grad(set_to_none=True)
            backward_step(d_loss, d_opt, scaler, average=True)
            logs.update(d_logs)
    if scaler is not None:
        scaler.update()
    return x_hat.detach().float(), aux, logs
