"""The prior's checkpoint file, `prior.pt` in each of its Train run's checkpoints: the weights,
the shape to rebuild it (CodePriorConfig), the code grid it models, and the step, losses and
seed it was saved at. Written by the Train loop, read by drawing (`ablate sample` included)."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

from ablate import storage

PRIOR_FILE = "prior.pt"
PRIOR_STATE_FILE = "prior_state.pt"  # optimizer, schedule, step, epoch: what a restart needs


def save_prior(folder: Path, model, grid: tuple[int, int] | list[int], *, step: int, loss: float, val_loss: float,
               seed: int) -> None:
    """Write `folder`/prior.pt.

    Args:
        folder: a checkpoint folder being assembled (local).
        model: the CodePrior (unwrapped from DDP).
        grid: (h, w) of the code grid (raster order).
        step, loss, val_loss: where training stood.
        seed: the prior's seed (chunk seeds derive from it).
    """
    import torch

    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(model.config), "grid": list(grid),
                "step": int(step), "loss": float(loss), "val_loss": float(val_loss), "seed": int(seed)},
               Path(folder) / PRIOR_FILE)


def load_prior(folder: str, device: str = "cpu"):
    """(CodePrior in eval mode, the saved record) from a prior checkpoint folder (local or URI)."""
    import torch

    from ablate.models.code_prior import CodePrior, CodePriorConfig

    path = storage.join(folder, PRIOR_FILE)
    source = io.BytesIO(storage.read_bytes(path)) if storage.is_uri(path) else path
    saved = torch.load(source, map_location=device, weights_only=True)
    model = CodePrior(CodePriorConfig(**saved["config"])).to(device)
    model.load_state_dict(saved["model"])
    return model.eval(), saved
