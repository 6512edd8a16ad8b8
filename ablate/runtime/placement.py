"""How many Train workers of how many CPUs (and GPUs) each trial gets, and how many
trials run at once: one rule for the grid, `fm pretrain` and `segmenter train`.

Resource rule (measured on a 2-core machine): Ray Data's read/decode tasks each
need one whole CPU, so the CPUs held by all concurrent trials' drivers and
workers must leave at least one CPU free, or the stream never starts and the
run hangs without an error. `plan_placement` enforces it.

GPUs are counted per node exactly as CPUs are: a worker's share of a GPU
(`--gpus-per-worker 0.25` packs four workers on one device) must fit on one node, and
a grid the nodes' GPUs cannot hold is refused before any trial starts, naming the
shortfall. Trials on GPUs eat decoded images far faster than CPU trials, so the CPUs
kept for Ray Data grow with the trials fed: DATA_CPUS_PER_GPU_TRIAL each, at least the
one whole CPU (a chosen figure, not yet measured on a GPU machine).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ablate.specs import ConfigError

DATA_CPU_RESERVE = 1.0
DATA_CPUS_PER_GPU_TRIAL = 0.5
_UNIT = 10_000  # Ray's resource granularity; integers avoid 4 * 0.25 != 1.0 style trouble


def data_cpus(concurrent: int, gpus_per_worker: float) -> float:
    """CPUs kept free for Ray Data's decoding when `concurrent` trials run."""
    if gpus_per_worker > 0:
        return max(DATA_CPU_RESERVE, DATA_CPUS_PER_GPU_TRIAL * concurrent)
    return DATA_CPU_RESERVE


def _kept(concurrent: int, gpus_per_worker: float) -> str:
    n = data_cpus(concurrent, gpus_per_worker)
    return "one CPU stays free for Ray Data" if n == DATA_CPU_RESERVE else f"{n:g} stay free for Ray Data's decoding"


def gpu_worker_slots(node_gpus: list[float], gpus_per_worker: float) -> int:
    """How many workers of `gpus_per_worker` GPUs the nodes hold (each worker on one node)."""
    g = round(gpus_per_worker * _UNIT)
    return sum(round(n * _UNIT) // g for n in node_gpus)


def check_gpus(node_gpus: list[float], workers: int, gpus_per_worker: float, concurrent: int | None) -> int:
    """Trials that fit on the nodes' GPUs (ConfigError naming the shortfall when not one,
    or not `concurrent`, fits)."""
    if gpus_per_worker < 0:
        raise ConfigError(f"--gpus-per-worker must be >= 0, got {gpus_per_worker:g}")
    if gpus_per_worker > 1 and gpus_per_worker != int(gpus_per_worker):
        raise ConfigError(f"--gpus-per-worker {gpus_per_worker:g}: above 1, Ray gives whole GPUs only")
    listed = ", ".join(f"{n:g}" for n in node_gpus) or "none"
    if sum(node_gpus) == 0:
        raise ConfigError(f"--gpus-per-worker {gpus_per_worker:g}, but no Ray node has a GPU (GPUs per node: {listed})")
    if gpus_per_worker > max(node_gpus):
        raise ConfigError(f"--gpus-per-worker {gpus_per_worker:g}: no node has that many GPUs (GPUs per node: {listed})")
    slots = gpu_worker_slots(node_gpus, gpus_per_worker)
    fits = slots // workers
    want = max(1, concurrent or 1)
    if fits < want:
        need = want * workers
        raise ConfigError(
            f"{want} concurrent trial(s) x {workers} worker(s) x {gpus_per_worker:g} GPU need {need} worker slots "
            f"({need * gpus_per_worker:g} GPUs), but the nodes (GPUs per node: {listed}) hold {slots}: "
            f"short by {need - slots} slot(s) ({(need - slots) * gpus_per_worker:g} GPUs). "
            f"Lower --concurrent, --workers or --gpus-per-worker."
        )
    return fits


@dataclass(frozen=True)
class Placement:
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    threads_per_worker: int
    concurrent: int
    driver_cpus: float = 0.01
    data_cpus: float = DATA_CPU_RESERVE  # CPUs left free for Ray Data's decoding

    def scaling_config(self):
        """Ray Train's ScalingConfig for one trial's worker group."""
        import ray.train

        gpu = {"GPU": self.gpus_per_worker} if self.gpus_per_worker else {}
        return ray.train.ScalingConfig(num_workers=self.workers, use_gpu=self.gpus_per_worker > 0,
                                       resources_per_worker={"CPU": self.cpus_per_worker, **gpu})


def ray_data_can_starve(node_cpus: list[float], workers: int, cpus_per_worker: float, drivers: int,
                        driver_cpus: float) -> bool:
    """True when some placement of `workers` Train workers and `drivers` trial drivers
    leaves no node with one whole free CPU, so Ray Data's next task could wait forever.

    Ray puts them on whichever nodes it likes, so the worst case decides: for each node
    the fewest (workers, drivers) that take it below one free CPU, then whether the
    whole cluster can be covered with what there is (a small knapsack, Pareto-pruned)."""
    unit = 10_000  # Ray's resource granularity; integers avoid 2 * 0.95 != 1.9 trouble
    c, d = max(1, round(cpus_per_worker * unit)), round(driver_cpus * unit)
    spent = {0: 0}  # workers used -> fewest drivers used, to cover the nodes seen so far
    for n in node_cpus:
        cap = round(n * unit)
        ways = []
        for j in range(min(workers, cap // c) + 1):
            free = cap - j * c
            i = 0 if free < unit else (free - unit) // d + 1 if d else drivers + 1
            if i <= drivers and j * c + i * d <= cap:
                ways.append((j, i))
            if i == 0:
                break
        nxt: dict[int, int] = {}
        for w, dr in spent.items():
            for j, i in ways:
                if w + j <= workers and dr + i <= drivers and dr + i < nxt.get(w + j, drivers + 1):
                    nxt[w + j] = dr + i
        if not nxt:
            return False  # this node keeps a whole CPU whatever lands on it
        spent = nxt
    return True


def plan_placement(total_cpus: float, workers: int, cpus_per_worker: float | None, gpus_per_worker: float,
                   concurrent: int | None, driver_cpus: float = 0.01,
                   node_cpus: list[float] | None = None, node_gpus: list[float] | None = None) -> Placement:
    """`node_cpus`: the CPUs of each node when Ray spans several; a worker must then fit
    on one node, and the free CPU Ray Data needs must stay whole on some node, not be
    the sum of slivers left on many (worst case, `ray_data_can_starve`).
    `node_gpus`: the GPUs of each node (Ray's view; a node may declare `num_gpus`);
    with `gpus_per_worker` > 0 the trials must fit on them too (`check_gpus`). None
    skips the GPU check (a caller that has not asked Ray)."""
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    # Every caller (launch, fm pretrain, segmenter train) gets these refusals: Tune reads a
    # concurrency of 0 as unlimited, and a 0-CPU worker makes every count of trials "fit".
    if concurrent is not None and concurrent < 1:
        raise ConfigError(f"--concurrent must be >= 1, got {concurrent}")
    if cpus_per_worker is not None and not (math.isfinite(cpus_per_worker) and cpus_per_worker >= 0.01):
        raise ConfigError(f"--cpus-per-worker must be > 0 (at least 0.01), got {cpus_per_worker:g}")
    multi = node_cpus is not None and len(node_cpus) > 1
    nodes = node_cpus or []  # CPUs per node, read only where `multi`
    if total_cpus - DATA_CPU_RESERVE <= driver_cpus:
        raise ConfigError(f"Ray has {total_cpus:g} CPUs; at least 2 are needed (one stays free for Ray Data)")
    gpu_fits = None
    if gpus_per_worker and node_gpus is not None:
        gpu_fits = check_gpus(node_gpus, workers, gpus_per_worker, concurrent)
    # The trials the CPUs are shared among when sizing workers: as asked, else as many as
    # the GPUs hold (packing), while each worker still gets its 0.05 CPU.
    target = concurrent or gpu_fits or 1
    while concurrent is None and target > 1 and \
            (total_cpus - data_cpus(target, gpus_per_worker)) / target < workers * 0.05 + driver_cpus:
        target -= 1
    budget = total_cpus - data_cpus(target, gpus_per_worker)
    if cpus_per_worker is None:
        per_trial = budget / target
        cpus_per_worker = math.floor((per_trial - driver_cpus) / workers * 20) / 20  # 0.05 steps
        cpus_per_worker = min(cpus_per_worker, 8.0)
        if multi:  # one worker on one node, beside a driver
            cpus_per_worker = min(cpus_per_worker, math.floor((max(nodes) - driver_cpus) * 20) / 20)
        if cpus_per_worker < 0.05:
            raise ConfigError(f"{workers} workers x {concurrent or 1} concurrent trials do not fit in {total_cpus:g} CPUs")
    if multi and cpus_per_worker > max(nodes):
        raise ConfigError(f"--cpus-per-worker {cpus_per_worker:g}: no node has that many CPUs "
                          f"(nodes: {', '.join(f'{n:g}' for n in nodes)})")
    per_trial = workers * cpus_per_worker + driver_cpus
    fits = int((total_cpus - DATA_CPU_RESERVE) // per_trial)
    while fits > 0 and fits * per_trial > total_cpus - data_cpus(fits, gpus_per_worker):
        fits -= 1  # GPU trials: more CPUs kept for decoding as more trials are fed
    if gpu_fits is not None:
        fits = min(fits, gpu_fits)
    if multi:
        while fits > 0 and ray_data_can_starve(nodes, fits * workers, cpus_per_worker, fits, driver_cpus):
            fits -= 1
    if concurrent is None:
        concurrent = max(1, fits)
    if concurrent > fits:
        budget = total_cpus - data_cpus(concurrent, gpus_per_worker)
        if multi and concurrent * per_trial <= budget:
            raise ConfigError(
                f"{concurrent} concurrent trials x {workers} workers x {cpus_per_worker:g} CPUs could fill every node "
                f"(CPUs per node: {', '.join(f'{n:g}' for n in nodes)}) below one free CPU, and a Ray Data task "
                f"needs one whole CPU on one node, or the stream stalls. Lower --concurrent or --cpus-per-worker."
            )
        raise ConfigError(
            f"{concurrent} concurrent trials x ({workers} workers x {cpus_per_worker:g} CPUs + {driver_cpus} driver) "
            f"= {concurrent * per_trial:g} CPUs, but only {budget:g} of {total_cpus:g} may be held "
            f"({_kept(concurrent, gpus_per_worker)}, or the stream stalls). "
            f"Lower --concurrent or --cpus-per-worker."
        )
    return Placement(workers, cpus_per_worker, gpus_per_worker, max(1, round(cpus_per_worker)), concurrent, driver_cpus,
                     data_cpus(concurrent, gpus_per_worker))
