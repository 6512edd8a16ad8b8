"""The prior's checkpoint file, `prior.pt` in each of its Train run's checkpoints: the weights,
the shape to rebuild it (CodePriorConfig), the code grid it models, the step, losses and seed
it was saved at, and for a conditional prior its condition (data/labels.py: the label column,
its values, their train counts). Written by the Train loop, read by drawing (`ablate sample`
included)."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

from ablate import storage

PRIOR_FILE = "prior.pt"
PRIOR_STATE_FILE = "prior_state.pt"  # optimizer, schedule, step, epoch: what a restart needs


def save_prior(folder: Path, model, grid: tuple[int, int] | list[int], *, step: int, loss: float, val_loss: float,
               seed: int, condition: dict | None = None) -> None:
    """Write `folder`/prior.pt.

    Args:
        folder: a checkpoint folder being assembled (local).
        model: the CodePrior (unwrapped from DDP).
        grid: (h, w) of the code grid (raster order).
        step, loss, val_loss: where training stood.
        seed: the prior's seed (chunk seeds derive from it).
        condition: a conditional prior's Condition.record(), one value per start token; None
            (and no key in the file) for an unconditional one.
    """
    import torch

    k = model.config.n_conditions
    if (condition is None) != (k == 0) or (condition is not None and len(condition["values"]) != k):
        raise ValueError(f"a prior with {k} condition tokens saved with condition {condition!r}")
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(model.config), "grid": list(grid),
                "step": int(step), "loss": float(loss), "val_loss": float(val_loss), "seed": int(seed),
                **({"condition": condition} if condition is not None else {})},
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
