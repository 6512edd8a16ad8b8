"""The per-worker training loop (ablate.train.loop): a restart resumes at the checkpoint's loss scale; a configuration error is reported once, not raised for a retry."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ablate.config import ConfigError
from tests.helpers.checkpoints import TINY_32PX_SPEC

# ---------------------------------------------------------------- finding 5: verified checkpoints

def test_fp16_grad_scaler_state_is_checkpointed_and_restored(tmp_path, monkeypatch):
    """An fp16 run restarted from its checkpoint goes on at the loss scale its GradScaler had
    found (not 65536 again, which would skip steps while it climbs down)."""
    import torch

    from ablate.models.checkpoint import read_checkpoint, write_checkpoint
    from ablate.models.presets import build_model
    from ablate.train import loop

    model = build_model("tiny", 32, {})
    opt = torch.optim.Adam(model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=65536.0)
    scaler.scale(torch.ones(()))  # the scale exists from the first scaled loss on
    scaler.update(new_scale=512.0)  # as after a few overflowing steps
    folder = tmp_path / "train" / "l1-s0-a" / "checkpoint_2026-01-01_00-00-00.000000"
    folder.mkdir(parents=True)
    write_checkpoint(folder, model_state=model.state_dict(), optimizer_state=opt.state_dict(), step=6, spec=TINY_32PX_SPEC,
                     grad_scaler_state=scaler.state_dict())
    assert read_checkpoint(folder)["grad_scaler"]["scale"] == 512.0
    monkeypatch.setattr(loop, "restored_location", lambda: str(folder))
    fresh = torch.amp.GradScaler("cpu", init_scale=65536.0)
    worker = SimpleNamespace(device=torch.device("cpu"), rank=0, model=model, opt=opt, d_opt=None, scaler=fresh,
                             spec=SimpleNamespace(combination="l1", seed=0))
    assert loop.WorkerRun._restore(worker) == 6
    assert fresh.get_scale() == 512.0
    # bf16 / fp32 runs have no scaler and their checkpoints carry none.
    plain = tmp_path / "plain"
    plain.mkdir()
    write_checkpoint(plain, model_state=model.state_dict(), optimizer_state=opt.state_dict(), step=6, spec=TINY_32PX_SPEC)
    assert "grad_scaler" not in read_checkpoint(plain)


@pytest.mark.fault
def test_config_error_in_a_worker_is_reported_once_not_raised_for_a_retry(monkeypatch):
    """The wiring: the per-worker loop reports a ConfigError (no Ray Train restart follows a normal
    return) and re-raises anything else (a fault, which the restarts are for)."""
    import ray.train

    from ablate.runtime.config_errors import CONFIG_ERROR
    from ablate.train import loop

    reported = []
    monkeypatch.setattr(ray.train, "report", lambda metrics, *a, **k: reported.append(metrics))

    class Wrong:
        def __init__(self, config):
            raise ConfigError("trial a-s0: model: resolution 40 is not divisible by the downsampling factor 16")

    monkeypatch.setattr(loop, "WorkerRun", Wrong)
    loop.train_loop_per_worker({})  # returns: nothing for Ray Train to retry
    assert reported == [{CONFIG_ERROR: "ConfigError: trial a-s0: model: resolution 40 is not divisible by the "
                                       "downsampling factor 16"}]

    class Faulty:
        def __init__(self, config):
            raise RuntimeError("NCCL timeout")

    monkeypatch.setattr(loop, "WorkerRun", Faulty)
    with pytest.raises(RuntimeError, match="NCCL timeout"):
        loop.train_loop_per_worker({})
    assert len(reported) == 1
