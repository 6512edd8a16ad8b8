"""How many Train workers of how many CPUs (and GPUs) each trial gets, and how many
trials run at once: one rule for the grid, `fm pretrain` and `segmenter train`.

Resource rule (measured on a 2-core machine): Ray Data's read/decode tasks each
need one whole CPU, so the CPUs held by all concurrent trials' drivers and
workers must leave at least one CPU free, or the stream never starts and the
run hangs without an error. `plan_placement` enforces it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ablate.config import ConfigError

DATA_CPU_RESERVE = 1.0


@dataclass(frozen=True)
class Placement:
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    threads_per_worker: int
    concurrent: int
    driver_cpus: float = 0.01

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
                   node_cpus: list[float] | None = None) -> Placement:
    """`node_cpus`: the CPUs of each node when Ray spans several; a worker must then fit
    on one node, and the free CPU Ray Data needs must stay whole on some node, not be
    the sum of slivers left on many (worst case, `ray_data_can_starve`)."""
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    multi = node_cpus is not None and len(node_cpus) > 1
    budget = total_cpus - DATA_CPU_RESERVE
    if budget <= driver_cpus:
        raise ConfigError(f"Ray has {total_cpus:g} CPUs; at least 2 are needed (one stays free for Ray Data)")
    if cpus_per_worker is None:
        per_trial = budget / (concurrent or 1)
        cpus_per_worker = math.floor((per_trial - driver_cpus) / workers * 20) / 20  # 0.05 steps
        cpus_per_worker = min(cpus_per_worker, 8.0)
        if multi:  # one worker on one node, beside a driver
            cpus_per_worker = min(cpus_per_worker, math.floor((max(node_cpus) - driver_cpus) * 20) / 20)
        if cpus_per_worker < 0.05:
            raise ConfigError(f"{workers} workers x {concurrent or 1} concurrent trials do not fit in {total_cpus:g} CPUs")
    if multi and cpus_per_worker > max(node_cpus):
        raise ConfigError(f"--cpus-per-worker {cpus_per_worker:g}: no node has that many CPUs "
                          f"(nodes: {', '.join(f'{n:g}' for n in node_cpus)})")
    per_trial = workers * cpus_per_worker + driver_cpus
    fits = int(budget // per_trial)
    if multi:
        while fits > 0 and ray_data_can_starve(node_cpus, fits * workers, cpus_per_worker, fits, driver_cpus):
            fits -= 1
    if concurrent is None:
        concurrent = max(1, fits)
    if concurrent > fits:
        if multi and concurrent * per_trial <= budget:
            raise ConfigError(
                f"{concurrent} concurrent trials x {workers} workers x {cpus_per_worker:g} CPUs could fill every node "
                f"(CPUs per node: {', '.join(f'{n:g}' for n in node_cpus)}) below one free CPU, and a Ray Data task "
                f"needs one whole CPU on one node, or the stream stalls. Lower --concurrent or --cpus-per-worker."
            )
        raise ConfigError(
            f"{concurrent} concurrent trials x ({workers} workers x {cpus_per_worker:g} CPUs + {driver_cpus} driver) "
            f"= {concurrent * per_trial:g} CPUs, but only {budget:g} of {total_cpus:g} may be held "
            f"(one CPU stays free for Ray Data, or the stream stalls). Lower --concurrent or --cpus-per-worker."
        )
    return Placement(workers, cpus_per_worker, gpus_per_worker, max(1, int(round(cpus_per_worker))), concurrent, driver_cpus)
