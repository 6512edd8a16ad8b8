"""Sum of weighted loss terms -> (total, {"loss/<term>": value, ...}).

Every configured number acts: `weight` multiplies the term, `start_step` zeroes
it before that step, and `adaptive` multiplies it by the taming-style balance
    lambda = clamp(||grad_W L_rec|| / (||grad_W L_term|| + 1e-4), 0, 1e4)
at W = the decoder's last layer, where L_rec is the weighted sum of the
non-adaptive image terms (the paper's code applied this to the perceptual,
foundation-model and GAN terms). Log values are detached tensors: converting
them to floats is the caller's choice, so a training step forces no host sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from ablate.losses.base import AuxLoss
from ablate.losses.terms import LOSSES
from ablate.specs import LossSpec

if TYPE_CHECKING:
    from ablate.losses.adversarial import AdversarialLoss

ADAPTIVE_MAX = 1e4


@dataclass
class Term:
    name: str
    module: nn.Module
    weight: float
    start_step: int
    adaptive: bool


class CompositeLoss(nn.Module):
    def __init__(self, terms: list[Term]):
        super().__init__()
        if not terms:
            raise ValueError("a composite loss needs at least one term")
        self.terms = terms
        # Register modules so .to(device) and state_dict reach them.
        self.modules_ = nn.ModuleDict({t.name: t.module for t in terms})
        # fp16 training sets this to its GradScaler's `scale`: the adaptive weight's gradients
        # are then taken of the scaled losses (fp16 backward underflows otherwise); the ratio
        # of their norms does not depend on the common scale.
        self.grad_scale = None

    @classmethod
    def from_specs(cls, specs: tuple[LossSpec, ...] | list[LossSpec]) -> CompositeLoss:
        terms = [
            Term(s.name, LOSSES.build(s.name, where=f"losses.{s.name}", **s.options), s.weight, s.start_step, s.adaptive)
            for s in specs
        ]
        return cls(terms)

    def forward(
        self,
        x: torch.Tensor,
        x_hat: torch.Tensor,
        aux: dict[str, torch.Tensor],
        step: int = 0,
        last_layer: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        values: dict[str, torch.Tensor] = {}
        for t in self.terms:
            if isinstance(t.module, AuxLoss):
                if t.module.reads_aux not in aux:
                    raise ValueError(f"loss {t.name!r} reads {t.module.reads_aux!r}, which the model did not return")
                v = t.module(aux[t.module.reads_aux])
            else:
                a, b = self._channels(t, x, x_hat)
                if getattr(t.module, "autocast_ok", False):
                    v = t.module(a, b)
                else:  # pixel, SSIM, edge filters: fp32 whatever the autocast (runtime/precision.py)
                    with torch.autocast(x.device.type, enabled=False):
                        v = t.module(a.float(), b.float())
            values[t.name] = v.float()  # every term sums and logs as an fp32 scalar

        active = {t.name: step >= t.start_step for t in self.terms}
        rec = [t.weight * values[t.name] for t in self.terms
               if active[t.name] and not t.adaptive and not isinstance(t.module, AuxLoss)]
        total = x_hat.new_zeros(())
        logs: dict[str, torch.Tensor] = {}
        for t in self.terms:
            v = values[t.name]
            # A term may carry a tag saying more than its name (e.g. "lpips[random-vgg]"
            # when run with a random trunk), so logs can't pass a stand-in off as the real thing.
            logs[f"loss/{getattr(t.module, 'tag', t.name)}"] = v.detach()
            if not active[t.name]:
                continue
            factor: float | torch.Tensor = t.weight
            if t.adaptive:
                # cast: sum() of a non-empty list of tensors is a tensor; typeshed says `| int`.
                lam = self._adaptive(cast(torch.Tensor, sum(rec)) if rec else None, v, last_layer, t.name,
                                     self.grad_scale)
                logs[f"adaptive/{getattr(t.module, 'tag', t.name)}"] = lam
                factor = factor * lam
            total = total + factor * v
        logs["loss/total"] = total.detach()
        return total, logs

    @staticmethod
    def _channels(t: Term, x: torch.Tensor, x_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The channels a term scores: the edge map (4th) for edge_map_l1, RGB for every other."""
        if getattr(t.module, "edge_map_only", False):
            if x.shape[1] < 4:
                raise ValueError(f"loss {t.name!r} scores the edge map, a 4th channel, but this trial has "
                                 f"{x.shape[1]}: add model.edge_channel, or leave {t.name} out")
            return x[:, 3:], x_hat[:, 3:]
        if getattr(t.module, "rgb_only", True):
            return x[:, :3], x_hat[:, :3]
        return x, x_hat

    @staticmethod
    def _adaptive(rec: torch.Tensor | None, term: torch.Tensor, last_layer: torch.Tensor | None, name: str,
                  grad_scale=None) -> torch.Tensor:
        if rec is None:
            raise ValueError(f"loss {name!r} is adaptive but there is no non-adaptive image term to balance it against")
        if not torch.is_grad_enabled() or not term.requires_grad:
            # Validation and evaluation: no graph to differentiate (and no decoder layer is
            # passed); the term is reported at its plain weight.
            return term.new_ones(())
        if last_layer is None:
            raise ValueError(f"loss {name!r} is adaptive but no decoder last layer was given")
        if grad_scale is not None:
            rec, term = grad_scale(rec), grad_scale(term)
        g_rec = torch.autograd.grad(rec, last_layer, retain_graph=True)[0]
        g_term = torch.autograd.grad(term, last_layer, retain_graph=True, allow_unused=True)[0]
        if g_term is None:
            raise ValueError(f"loss {name!r} does not depend on the decoder's last layer; it cannot be adaptive")
        # Norms in fp32 (a bf16 sum of squares over the layer's weights loses the ratio's
        # digits); the gradients at the fp32 decoder weight are fp32 already.
        with torch.autocast(last_layer.device.type, enabled=False):
            g_rec, g_term = g_rec.float(), g_term.float()
            if grad_scale is not None:  # fp16: an overflowed scaled gradient makes no ratio; the
                # GradScaler skips this step anyway, and the term counts at weight 0 in it
                ok = torch.isfinite(g_rec).all() & torch.isfinite(g_term).all()
                g_rec, g_term = torch.where(ok, g_rec, 0.0), torch.where(ok, g_term, 1.0)
            lam = g_rec.norm() / (g_term.norm() + 1e-4)
        return lam.clamp(0.0, ADAPTIVE_MAX).detach()

    # -- terms that train a network of their own (the PatchGAN discriminator) --

    def adversaries(self) -> list[Term]:
        return [t for t in self.terms if hasattr(t.module, "discriminator_loss")]

    def discriminator_loss(self, x: torch.Tensor, x_hat: torch.Tensor, step: int
                           ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """The discriminators' own loss (None before their start step)."""
        total, logs = None, {}
        for t in self.adversaries():
            if step < t.start_step:
                continue
            adversary = cast("AdversarialLoss", t.module)  # adversaries(): the terms with a discriminator_loss
            loss, term_logs = adversary.discriminator_loss(x[:, :3], x_hat[:, :3])
            total = loss if total is None else total + loss
            logs.update(term_logs)
        return total, logs

    def trainable_state(self) -> dict[str, dict]:
        """State of the networks the loss trains itself (frozen feature nets excluded)."""
        return {t.name: t.module.state_dict() for t in self.adversaries()}

    def load_trainable_state(self, state: dict[str, dict]) -> None:
        for t in self.adversaries():
            t.module.load_state_dict(state[t.name])
