"""The prior's Train loop (ablate.prior.loop) across two workers is real data-parallel
training: each rank trains on its own disjoint shard with half the global batch, the ranks
end with the same weights, and the run equals one worker stepping on the whole global
batches.

The loop's own data order cannot give a one-worker run the same global batches (each rank
shuffles its shard with a seed of its rank; the pkeep corruption draws from a per-rank
stream), so the one-worker run here replays the batches the two ranks drew, concatenated,
with pkeep 1 and no dropout: its forward is then a function of the batch alone, and mean
cross-entropy over the global batch equals the mean of the two ranks' means (equal shares),
so DDP's averaged gradient is the one-worker gradient. The val loss the run reports is over
every val grid, though they do not split evenly over the workers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ablate.specs import PriorSpec
from tests.helpers.tensorboard import tensorboard_events

STEPS, BATCH, N_TRAIN, N_VAL, GRID, VOCAB = 6, 4, 12, 3, (4, 4), 8


def _config(tmp_path: Path, name: str) -> dict:
    p = PriorSpec(layers=1, heads=2, width=16, steps=STEPS, batch_size=BATCH, lr=3e-2, log_every=1, checkpoint_every=3,
                  pkeep=1.0, dropout=0.0)
    return {"prior": dataclasses.asdict(p), "grid": list(GRID), "vocab": VOCAB, "seed": 0, "steps": STEPS,
            "batch_size": BATCH, "lr": 3e-2, "warmup_steps": 1, "log_every": 1, "checkpoint_every": 3,
            "precision": "auto", "threads": 1, "tb_dir": str(tmp_path / name / "tb"), "splits": ["train", "val"],
            "out": str(tmp_path / name)}


def test_the_val_shares_of_the_ranks_partition_the_split_whatever_order_each_read_it_in():
    from ablate.prior.loop import share_of

    rng = np.random.default_rng(1)
    grids = rng.integers(0, 4, (7, 3))
    grids[5] = grids[2]  # a repeated grid counts twice, as it does in the split
    labels = np.array([0, 1, 0, 1, 1, 0, 1])  # ... here with another class (a conditional prior's val split)
    pairs = sorted((*g, c) for g, c in zip(grids.tolist(), labels.tolist(), strict=True))
    for world in (1, 2, 3, 9):
        shares = []
        for rank in range(world):
            order = rng.permutation(len(grids))
            shares.append(share_of(grids[order], labels[order], rank, world))
            unlabelled, none = share_of(grids[order], None, rank, world)
            assert none is None and len(unlabelled) == len(shares[-1][0])
        assert sorted((*g, c) for s, l in shares for g, c in zip(s.tolist(), l.tolist(), strict=True)) == pairs
        assert max(len(s) for s, _ in shares) - min(len(s) for s, _ in shares) <= 1
    assert share_of(np.zeros((0, 0), np.int64), None, 1, 2)[0].shape == (0, 0)  # an empty split: an empty share


def _losses(tb_dir: str) -> list[float]:
    return [e.value for e in tensorboard_events(Path(tb_dir)).Scalars("prior/loss")]


@pytest.mark.ray
def test_two_workers_train_disjoint_shards_in_step_and_equal_one_worker_on_the_global_batches(ray_local, tmp_path):
    import ray.data
    import torch

    from ablate.models.code_prior import CodePrior, CodePriorConfig
    from ablate.prior.loop import UNSPLIT
    from ablate.prior.prior_file import load_prior
    from ablate.runtime import Placement, checkpoint_location, fit_torch_run

    def recording_loop(config):  # a closure: Ray pickles it by value
        """prior_train_loop, with each rank's shard, its batches in order and its final weights
        written under config["out"]; with config["replay"], the batches are those files' global
        batches (rank 0's rows, then rank 1's) instead of the loop's own order."""
        import os

        import ray.train
        import torch

        import ablate.prior.loop as prior_loop

        rank = ray.train.get_context().get_world_rank()
        out = config["out"]
        os.makedirs(out, exist_ok=True)
        own_batches, own_report = prior_loop.batches, prior_loop._report
        drawn: list[np.ndarray] = []

        def batches(codes, labels, per_worker, seed, r, epoch, device):
            if "replay" in config:
                steps = [np.load(os.path.join(config["replay"], f"batches-rank{k}.npy")) for k in (0, 1)]
                for a, b in zip(*steps, strict=True):
                    yield torch.from_numpy(np.concatenate([a, b])).to(device), None
                return
            if epoch == 0:
                np.save(os.path.join(out, f"shard-rank{rank}.npy"), codes)
            for batch, classes in own_batches(codes, labels, per_worker, seed, r, epoch, device):
                drawn.append(batch.cpu().numpy())
                yield batch, classes

        def report(model, *rest):
            own_report(model, *rest)
            if rest[-1]:  # final
                torch.save(model.state_dict(), os.path.join(out, f"params-rank{rank}.pt"))
                if drawn:
                    np.save(os.path.join(out, f"batches-rank{rank}.npy"), np.stack(drawn))

        prior_loop.batches, prior_loop._report = batches, report
        prior_loop.prior_train_loop(config)

    # Learnable grids (so the loss falls): code = (start + stride * position) mod vocab, a distinct
    # (start, stride) per grid, so each grid also names its row.
    rng = np.random.default_rng(0)
    pairs = rng.permutation([(a, b) for a in range(VOCAB) for b in (1, 3, 5, 7)])[:N_TRAIN + N_VAL]
    grids = (pairs[:, :1] + pairs[:, 1:] * np.arange(GRID[0] * GRID[1])) % VOCAB
    rows = {"train": grids[:N_TRAIN], "val": grids[N_TRAIN:]}
    assert len({r.tobytes() for r in rows["train"]}) == N_TRAIN  # each grid names its row
    codes = {s: ray.data.from_items([{"codes": c.astype(np.int32), "key": i} for i, c in enumerate(rows[s])])
             for s in rows}

    two = _config(tmp_path, "two")
    r2 = fit_torch_run(recording_loop, two, datasets=codes, name="prior-ddp", storage_path=str(tmp_path / "train"),
                       placement=Placement(2, 0.5, 0.0, 1, 1), unsplit=UNSPLIT)
    out = Path(two["out"])

    # Each rank held its own shard: disjoint, half the train grids each, together all of them.
    index = {r.tobytes(): i for i, r in enumerate(rows["train"])}
    shards = [{index[r.tobytes()] for r in np.load(out / f"shard-rank{k}.npy")} for k in (0, 1)]
    assert [len(s) for s in shards] == [N_TRAIN // 2] * 2
    assert not shards[0] & shards[1] and shards[0] | shards[1] == set(range(N_TRAIN))
    # ... and stepped on half the global batch, drawn from that shard only, every step.
    drawn = [np.load(out / f"batches-rank{k}.npy") for k in (0, 1)]
    for k in (0, 1):
        assert drawn[k].shape == (STEPS, BATCH // 2, GRID[0] * GRID[1])
        assert {index[r.tobytes()] for r in drawn[k].reshape(-1, GRID[0] * GRID[1])} <= shards[k]

    # Both ranks end with the same weights (gradients all-reduced every step), which moved.
    params = [torch.load(out / f"params-rank{k}.pt", weights_only=True) for k in (0, 1)]
    unequal = [n for n in params[0] if not torch.equal(params[0][n], params[1][n])]
    assert not unequal, f"the ranks' weights differ after {STEPS} DDP steps: {unequal}"
    torch.manual_seed(0)
    p = two["prior"]
    initial = CodePrior(CodePriorConfig(vocab=VOCAB, n_positions=GRID[0] * GRID[1], layers=p["layers"],
                                        heads=p["heads"], width=p["width"], dropout=0.0, pkeep=1.0)).state_dict()
    assert any(not torch.allclose(initial[n], params[0][n]) for n in initial), "training left the weights as built"

    # One worker on the same global batches: the same loss at every step and the same weights.
    one = {**_config(tmp_path, "one"), "replay": str(out)}
    r1 = fit_torch_run(recording_loop, one, datasets=codes, name="prior-one", storage_path=str(tmp_path / "train"),
                       placement=Placement(1, 1.0, 0.0, 1, 1), unsplit=UNSPLIT)
    single = torch.load(Path(one["out"]) / "params-rank0.pt", weights_only=True)
    # Except the attention's key bias: it shifts every logit of a query's softmax alike, so its
    # gradient is 0 but for rounding, which Adam's normalisation turns into lr-sized steps
    # (measured: 2e-4 apart here while every other weight is within 3e-7).
    width = p["width"]
    for n in single:
        a, b = params[0][n], single[n]
        if n.endswith("attn.qkv.bias"):
            a, b = torch.cat([a[:width], a[2 * width:]]), torch.cat([b[:width], b[2 * width:]])
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m, n=n: f"{n}: {m}")
    l2, l1 = _losses(two["tb_dir"]), _losses(one["tb_dir"])
    assert len(l2) == len(l1) == STEPS
    np.testing.assert_allclose(l2, l1, rtol=1e-5)
    assert l2[-1] < l2[0]  # a falling loss: the comparison is of training, not of noise

    # The reported val loss is the mean cross-entropy over every val grid: 3 grids on 2 workers,
    # which Ray Train's equal split would cut to 2 (it did: 1.748 reported, 1.739 over all 3).
    model, saved = load_prior(checkpoint_location(r2.checkpoint))
    with torch.no_grad():
        x = torch.from_numpy(rows["val"].astype(np.int64))
        want = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten()).item()
    assert r2.metrics["prior/val_loss"] == pytest.approx(want, rel=1e-5) and saved["step"] == STEPS
    assert saved["val_loss"] == r2.metrics["prior/val_loss"]
    assert r1.metrics["prior/val_loss"] == pytest.approx(want, rel=1e-4)
