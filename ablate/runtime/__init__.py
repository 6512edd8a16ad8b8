"""What every Ray program here shares (the ablation grid, `fm pretrain`, `segmenter
train`, evaluation): starting or joining Ray, placement, one generic "fit one
TorchTrainer run" driver, the per-worker distributed helpers, the TensorBoard
writer and the learning-rate schedule.

This is the package's public face (as `ray.train.torch` presents its
`train_loop_utils`): import from `ablate.runtime`. Names load on first use, so a
command that needs only one helper does not import torch or Ray.
"""

from __future__ import annotations

import importlib

# name -> submodule holding it
_HOMES = {
    "start_ray": "cluster", "ray_session": "cluster", "node_cpus": "cluster", "node_gpus": "cluster", "local_resources": "cluster", "total_cpus": "cluster",
    "sigterm_as_interrupt": "cluster",
    "DATA_CPU_RESERVE": "placement", "Placement": "placement", "plan_placement": "placement",
    "ray_data_can_starve": "placement", "check_gpus": "placement", "data_cpus": "placement",
    "gpu_worker_slots": "placement",
    "PRECISIONS": "precision", "Precision": "precision", "PrecisionError": "precision", "resolve_precision": "precision",
    "RunFolders": "fit", "RunOptions": "fit", "config_digest": "fit", "run_folders": "fit", "fit_torch_run": "fit",
    "fit_standalone": "fit", "final_state": "fit", "program_run": "fit", "where_the_run_is": "fit",
    "average_gradients": "distributed", "is_distributed": "distributed", "mean_over_workers": "distributed",
    "report_to_train": "distributed", "restore_states": "distributed", "checkpoint_location": "distributed", "restored_location": "distributed", "unwrap": "distributed",
    "worker_context": "distributed", "Worker": "distributed", "start_worker": "distributed",
    "TrialWriter": "tensorboard", "mirror_logs": "tensorboard",
    "lr_factor": "schedule",
    "StepLoop": "steps", "resume": "steps",
    }

__all__ = list(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"ablate.runtime.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'ablate.runtime' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
