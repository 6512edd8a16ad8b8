"""The vector-quantiser's codebook + commitment loss, as computed by the model.

Its beta lives in the model config (`model.beta`), because the quantiser
computes the loss inside its forward; this term only weights it. For a plain
autoencoder the model reports 0, so the term is inert there (and says so in
the config check).
"""

from __future__ import annotations

from ablate.losses.base import AuxLoss
from ablate.losses.registry import LOSSES


class CodebookLoss(AuxLoss):
    reads_aux = "codebook"


@LOSSES.register("codebook", "VQ codebook + commitment loss reported by the quantiser (beta: model.beta)")
def codebook() -> CodebookLoss:
    return CodebookLoss()
