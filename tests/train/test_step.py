"""The train step (ablate.train.step) with train.compile: off by default; on, the autoencoder
is compiled in place (checkpoint keys as eager) and the same train step gives the eager
step's losses."""

from __future__ import annotations

import torch

from ablate.config import resolve_grid
from ablate.losses import CompositeLoss, LossSpec
from ablate.models import build_model
from ablate.runtime import resolve_precision
from ablate.specs import TrainSpec
from ablate.train.step import train_step


def _steps(compiled: bool, n: int = 2) -> tuple[list[float], list[str]]:
    torch.manual_seed(0)
    model = build_model("tiny", 32)
    if compiled:
        model.compile()
    loss_fn = CompositeLoss.from_specs([LossSpec(name="l1"), LossSpec(name="codebook")])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    p = resolve_precision("fp32", "cpu")
    out = [float(train_step(model, loss_fn, opt, None, p, None, x, s, model.last_layer)[2]["loss/total"])
           for s in range(n)]
    return out, sorted(model.state_dict())


def test_compile_is_off_by_default_and_set_by_launch():
    assert TrainSpec().compile is False
    full, _ = resolve_grid("losses", compile=True)
    assert {s.train.compile for s in full.trials} == {True}


def test_compiled_step_matches_eager_and_keeps_checkpoint_keys():
    eager, eager_keys = _steps(False)
    compiled, compiled_keys = _steps(True)
    assert compiled_keys == eager_keys  # in place: no "_orig_mod." prefix in checkpoints
    for a, b in zip(compiled, eager):
        assert abs(a - b) <= 1e-4 * max(1.0, abs(b)), (compiled, eager)
