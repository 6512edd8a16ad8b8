"""`ablate sample EXP --n N`: bring each finished prior of an experiment to N samples, one
Ray task per trial (on a GPU with --gpus-per-task), as evaluation spreads over a cluster.

Only the missing chunks are drawn (draw.py), so the command is resumable: re-run after an
interruption, it continues where it stopped, and the chunks it adds are the ones the trial
would have drawn itself. `ablate evaluate` then judges every sample in the folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ablate import storage
from ablate.errors import InvalidInput
from ablate.experiment_layout import ExperimentLayout


@dataclass(frozen=True)
class SampleOptions:
    """Args:
        exp: the experiment folder or URI.
        n: samples each trial's folder should hold afterwards.
        trials: only these trials (results.parquet's `trial`, or a combination name); () = all.
        gpus_per_task: GPUs per drawing task.
    """
    exp: str
    n: int
    trials: tuple[str, ...] = ()
    gpus_per_task: float = 0.0


def requests(opts: SampleOptions) -> list:
    """One DrawRequest per trial with a finished prior; InvalidInput naming what is missing,
    before Ray starts."""
    from ablate.models.checkpoint import locate_checkpoint
    from ablate.prior.draw import DrawRequest
    from ablate.prior.prior_file import PRIOR_FILE

    if isinstance(opts.n, bool) or not isinstance(opts.n, int) or opts.n < 1:
        raise InvalidInput(f"--n must be an integer >= 1, got {opts.n!r}")
    layout = ExperimentLayout(opts.exp)
    if not storage.is_file(layout.results):
        raise InvalidInput(f"{layout.results}: not found; `ablate sample` needs an experiment `ablate launch` wrote")
    results = storage.read_parquet(layout.results)
    if "prior.checkpoint" not in results.columns:
        raise InvalidInput(f"{layout.results}: no trial trained a prior (the grid has no `prior:` block); nothing "
                           "to sample")
    rows = results[[isinstance(c, str) and bool(c) for c in results["prior.checkpoint"]]]
    if opts.trials:
        rows = rows[[t in opts.trials or c in opts.trials for t, c in zip(rows["trial"], rows["combination"])]]
        if rows.empty:
            raise InvalidInput(f"--trial {','.join(opts.trials)}: no trial with a finished prior by that name in "
                               f"{layout.results}; with a prior: {', '.join(results['trial'][results['prior.checkpoint'].notna()])}")
    out = []
    for row in rows.to_dict("records"):
        autoencoder = locate_checkpoint(Path(opts.exp), row.get("checkpoint"))  # a URI checkpoint is read as recorded
        if autoencoder is None:
            raise InvalidInput(f"{row['trial']}: its autoencoder checkpoint {row.get('checkpoint')!r} is gone")
        if not storage.is_file(storage.join(row["prior.checkpoint"], PRIOR_FILE)):
            raise InvalidInput(f"{row['trial']}: its prior checkpoint {row['prior.checkpoint']} holds no {PRIOR_FILE}")
        top_k = row.get("config.prior.top_k")
        out.append(DrawRequest(folder=layout.trial_samples(row["trial"]), prior=row["prior.checkpoint"],
                               autoencoder=str(autoencoder), total=opts.n,
                               top_k=None if top_k is None or (isinstance(top_k, float) and math.isnan(top_k))
                               else int(top_k),
                               temperature=float(row.get("config.prior.temperature", 1.0)),
                               precision=str(row.get("config.train.precision", "auto")),
                               use_gpu=opts.gpus_per_task > 0))
    return out


def sample_more(opts: SampleOptions) -> dict[str, dict]:
    """Draw what each trial lacks; {folder: {"drawn", "total", "prior_step"}}. Needs Ray."""
    import ray

    from ablate.prior.draw import draw_samples

    todo = requests(opts)
    task = ray.remote(num_cpus=1, num_gpus=opts.gpus_per_task)(draw_samples)
    futures = {r.folder: task.remote(r) for r in todo}
    done = {}
    for folder, f in futures.items():
        done[folder] = ray.get(f)
    return done
