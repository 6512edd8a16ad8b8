"""PatchGAN adversarial term with hinge loss (taming VQGAN / the paper's code).

The term owns its discriminator. Two losses come out of it:
- generator (this module's forward, summed into the autoencoder's total):
      L_G = -mean D(x_hat)
- discriminator (`discriminator_loss`, stepped by its own optimizer in the
  training loop), hinge:
      L_D = 0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(x_hat)))
Both are off before the term's `start_step` (taming's disc_start): the
discriminator is not trained before then either. The term's `adaptive` flag
gives taming's adaptive weight; the paper used weight 0.5, adaptive.
Inputs in [0, 1] are mapped to [-1, 1] for the discriminator (pix2pix convention).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ablate.checks import check_pair
from ablate.losses.base import ImageLoss
from ablate.losses.registry import LOSSES
from ablate.models.discriminator import NLayerDiscriminator


class AdversarialLoss(ImageLoss):
    autocast_ok = True  # the PatchGAN runs under autocast; its logits are reduced in fp32

    def __init__(self, layers: int = 3, filters: int = 64, loss: str = "hinge", disc_lr: float | None = None):
        super().__init__()
        if loss not in ("hinge", "vanilla"):
            raise ValueError(f"adversarial.loss must be 'hinge' or 'vanilla', got {loss!r}")
        if disc_lr is not None and not disc_lr > 0:
            raise ValueError(f"adversarial.disc_lr must be > 0, got {disc_lr}")
        self.kind, self.disc_lr = loss, disc_lr
        self.discriminator = NLayerDiscriminator(3, filters, layers)

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        check_pair(x, x_hat, "adversarial", channels=3)
        # Freeze D for the generator pass: its gradients belong to its own step.
        for p in self.discriminator.parameters():
            p.requires_grad_(False)
        try:
            logits = self.discriminator(x_hat * 2 - 1).float()
        finally:
            for p in self.discriminator.parameters():
                p.requires_grad_(True)
        if self.kind == "hinge":
            return -logits.mean()
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))

    def discriminator_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_pair(x, x_hat, "adversarial (discriminator)", channels=3)
        real = self.discriminator(x.detach() * 2 - 1).float()
        fake = self.discriminator(x_hat.detach() * 2 - 1).float()
        if self.kind == "hinge":
            loss = 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())
        else:
            loss = 0.5 * (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                          + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
        return loss, {"disc/loss": loss.detach(), "disc/logits_real": real.detach().mean(),
                      "disc/logits_fake": fake.detach().mean()}


@LOSSES.register("adversarial", "PatchGAN discriminator (pix2pix, 3 layers, 64 filters), hinge loss, own optimizer step")
def adversarial(layers: int = 3, filters: int = 64, loss: str = "hinge", disc_lr: float | None = None) -> AdversarialLoss:
    return AdversarialLoss(layers, filters, loss, disc_lr)
