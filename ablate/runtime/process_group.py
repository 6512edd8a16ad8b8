"""The torch.distributed process group of every Train run, set up here rather than by
Ray's own `TorchConfig` backend, so that a run on the local Ray listens on 127.0.0.1 only.

Ray's backend has rank 0 open torch's TCP store on a port of its own choosing, and the
store's server binds every interface (`*:PORT`, measured), whatever address the workers
connect to: a local launch was reachable from the network although the README promised
loopback (issue 25). torch lets the store listen on a socket we bound ourselves
(`TCPStore(master_listen_fd=...)`), so on a local Ray (every worker's node address is
127.0.0.1, which only `runtime.cluster.loopback_only` gives) rank 0 binds 127.0.0.1 and
hands the store that socket, and gloo / NCCL pick the loopback interface for their own
connections. On a cluster (`--address`) the workers are on several machines and reach
rank 0 at its node address; the store then binds as Ray's backend does.

Everything else matches Ray 2.60's `TorchConfig` backend: gloo on CPUs, NCCL on GPUs, the
torchrun environment variables (RANK, LOCAL_RANK, WORLD_SIZE, ...) set before the group
is made, CUDA_VISIBLE_DEVICES shared on a node, the group destroyed at the end of a run of
several workers (Ray keeps a one-worker group: its destroy can hang).
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
from dataclasses import dataclass

from ray.train.backend import Backend, BackendConfig
from ray.train.torch import TorchConfig

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
# rank 0's listening socket, bound by `_bind_store_socket` and handed to the store by
# `_join` in the same worker process (both run on the rank-0 actor).
_listening: socket.socket | None = None


def _node_address() -> str:
    import ray

    return ray.util.get_node_ip_address()


def _bind_store_socket(host: str, loopback: bool) -> int:
    """On rank 0: a free port for the store. Kept bound (and handed to the store) on
    loopback, so the store cannot widen it; on a cluster released for the store to bind."""
    global _listening
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK if loopback else "", 0))
    port = sock.getsockname()[1]
    if loopback:
        _listening = sock
    else:
        sock.close()
    return port


def _torchrun_environment() -> None:
    """The variables torchrun sets (and Ray's backend sets), read by libraries that look for them."""
    import ray.train
    from ray.train.torch import get_device

    ctx = ray.train.get_context()
    os.environ.update({"LOCAL_RANK": str(ctx.get_local_rank()), "LOCAL_WORLD_SIZE": str(ctx.get_local_world_size()),
                       "NODE_RANK": str(ctx.get_node_rank()), "RANK": str(ctx.get_world_rank()),
                       "WORLD_SIZE": str(ctx.get_world_size()), "ACCELERATE_TORCH_DEVICE": str(get_device())})


def _join(backend: str, world_rank: int, world: int, host: str, port: int, timeout_s: int, loopback: bool) -> None:
    global _listening
    import torch.distributed as dist

    _torchrun_environment()
    if loopback:  # gloo's and NCCL's own connections on the loopback interface, not the host's address
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        os.environ.setdefault("NCCL_SOCKET_IFNAME", "lo")
    timeout = datetime.timedelta(seconds=timeout_s)
    if world_rank == 0 and loopback:
        sock, _listening = _listening, None
        assert sock is not None, "the store's socket is bound on rank 0 before the group is made"
        sock.listen()
        store = dist.TCPStore(LOOPBACK, port, world, True, timeout, master_listen_fd=sock.detach())
    else:
        store = dist.TCPStore(host, port, world, world_rank == 0, timeout)
    dist.init_process_group(backend=backend, store=store, rank=world_rank, world_size=world, timeout=timeout)


def _leave(destroy: bool) -> None:
    import torch
    import torch.distributed as dist

    if destroy and dist.is_initialized():
        dist.destroy_process_group()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class ProcessGroupBackend(Backend):
    """Makes the process group of a Train run's workers (see the module's docstring)."""

    share_cuda_visible_devices: bool = True

    def on_start(self, worker_group, backend_config: BackendConfig) -> None:
        import ray

        assert isinstance(backend_config, ProcessGroupConfig)  # Ray passes the config whose backend_cls this is

        backend = backend_config.backend
        if backend is None:
            backend = "nccl" if worker_group.get_resources_per_worker().get("GPU", 0) > 0 else "gloo"
        hosts = worker_group.execute(_node_address)
        loopback = all(h == LOOPBACK for h in hosts)
        port = worker_group.execute_single(0, _bind_store_socket, hosts[0], loopback)
        logger.info("process group: %s, %d worker(s), store at %s:%d%s", backend, len(hosts), hosts[0], port,
                    " (loopback only)" if loopback else "")
        ray.get([worker_group.execute_single_async(i, _join, backend=backend, world_rank=i, world=len(hosts), host=hosts[0],
                                                   port=port, timeout_s=backend_config.timeout_s, loopback=loopback)
                 for i in range(len(hosts))])

    def on_shutdown(self, worker_group, backend_config: BackendConfig) -> None:
        worker_group.execute(_leave, destroy=len(worker_group) > 1)


@dataclass
class ProcessGroupConfig(TorchConfig):
    """`TorchConfig` (its fields and the per-worker CUDA device context) with our backend."""

    @property
    def backend_cls(self):
        return ProcessGroupBackend
