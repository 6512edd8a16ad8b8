"""DDP is exact: two ranks with per-rank batch B/2 end with the same parameters as one
process with batch B, after k steps of the real model and composite loss.

SGD with momentum, not Adam: Adam divides by sqrt(v), so on parameters whose true
gradient is ~0 (a conv bias right before GroupNorm) it turns float summation-order
noise (~1e-7) into full-size steps, and no tolerance would tell DDP bugs from that."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ablate.losses import CompositeLoss, LossSpec
from ablate.models.presets import build_model

STEPS, BATCH, SIZE = 3, 4, 32
SPECS = [LossSpec("l1"), LossSpec("l2", weight=0.5), LossSpec("codebook")]


def _data() -> torch.Tensor:
    return torch.rand(STEPS, BATCH, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))


def _train(model, batches) -> dict[str, torch.Tensor]:
    loss_fn = CompositeLoss.from_specs(SPECS)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step, x in enumerate(batches):
        x_hat, aux = model(x)
        loss, _ = loss_fn(x, x_hat, aux, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    inner = model.module if hasattr(model, "module") else model
    return {k: v.detach().clone() for k, v in inner.state_dict().items()}


def _rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(build_model("tiny", SIZE))  # what prepare_model does on CPU
    half = BATCH // world
    state = _train(model, [x[rank * half:(rank + 1) * half] for x in _data()])
    if rank == 0:
        torch.save(state, out)
    dist.destroy_process_group()


def test_two_ranks_equal_one_process(tmp_path, one_thread):
    torch.manual_seed(0)  # one thread, like each rank: same kernels, same summation order
    single = _train(build_model("tiny", SIZE), list(_data()))
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_rank, args=(2, 29517, out), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    assert ddp.keys() == single.keys()
    moved = 0
    for k in single:
        assert torch.allclose(ddp[k], single[k], rtol=1e-4, atol=1e-5), k
        moved += int(not torch.equal(single[k], build_model("tiny", SIZE).state_dict()[k]))
    assert moved > 10  # the parameters did train: equality is not the trivial initial state
