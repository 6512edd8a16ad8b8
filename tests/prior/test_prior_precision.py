"""The prior's Train loop under bf16 autocast (issue 28: bf16 on CUDA). No GPU here, so the
same code path runs with `train.precision: bf16` on the CPU, where torch's autocast also
computes in bf16: the prior's forward really runs in bf16 (its logits come out bf16), the
cross-entropy is taken in fp32, and it learns as the fp32 run does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.prior.test_prior_train_run import _config


@pytest.mark.ray
def test_the_prior_trains_under_bf16_autocast_like_fp32(ray_local, tmp_path):
    import ray.data
    import torch

    from ablate.prior.prior_file import PRIOR_FILE
    from ablate.runtime import Placement, fit_torch_run

    # Codes a prior can learn: each grid repeats one of two patterns.
    patterns = np.array([[0, 1, 2, 3] * 4, [4, 5, 6, 7] * 4], dtype=np.int32)
    codes = {s: ray.data.from_items([{"codes": patterns[i % 2], "key": i} for i in range(n)])
             for s, n in (("train", 16), ("val", 4))}
    placement = Placement(workers=1, cpus_per_worker=1.0, gpus_per_worker=0.0, threads_per_worker=1, concurrent=1)

    def loop(config):  # records the dtype the prior's forward returns inside the loop's autocast
        import ablate.prior.loop as prior_loop
        from ablate.models import code_prior

        forward = code_prior.CodePrior.forward

        def recorded(self, *args, **kwargs):
            out = forward(self, *args, **kwargs)
            if self.training:
                with open(config["dtypes"], "a") as f:
                    f.write(f"{out.dtype}\n")
            return out

        code_prior.CodePrior.forward = recorded
        prior_loop.prior_train_loop(config)

    finals = {}
    for precision in ("bf16", "fp32"):
        dtypes = tmp_path / f"{precision}.txt"
        cfg = {**_config(tmp_path / precision, steps=30), "precision": precision, "lr": 1e-2, "checkpoint_every": 30,
               "dtypes": str(dtypes)}
        result = fit_torch_run(loop, cfg, datasets=codes, placement=placement, name=f"prior-{precision}",
                               storage_path=str(tmp_path / "train" / precision))
        seen = set(dtypes.read_text().split())
        assert seen == {"torch.bfloat16" if precision == "bf16" else "torch.float32"}, (precision, seen)
        with result.checkpoint.as_directory() as d:
            saved = torch.load(Path(d) / PRIOR_FILE, weights_only=True)
        assert saved["step"] == 30 and np.isfinite(saved["val_loss"])
        finals[precision] = saved["val_loss"]
    # From ln(8) = 2.08 nats at the start, both learn the two patterns; bf16 ends near fp32.
    assert finals["fp32"] < 1.0 and finals["bf16"] < 1.0
    assert abs(finals["bf16"] - finals["fp32"]) < 0.25, finals
