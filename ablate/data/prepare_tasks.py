"""The parallel stage of `prepare`: read + FOV + crop + resize of each file, in this
process or as Ray tasks, with a bounded number of results in flight.

Why plain Ray tasks and not Ray Data: Ray Data's streaming executor reserves a whole
CPU for itself and waits silently when none is free (a 2-core machine, or a cluster
busy with a grid), and its block sizes and ordering are its own; here every task is
a short batch of files, `ray.wait` keeps at most `window` batches in flight, so the
driver never holds more than window x batch rows, and the order results arrive in
does not matter (each result carries its file's index; shard_writer sorts).

Each task decodes its files one after another, so a worker holds one decoded image
at a time, however large (up to --max-pixels).

Small jobs (fewer than `in_process_below` files, or one CPU without a cluster) run
here in the driver: Ray's start-up (seconds) would cost more than it saves, and the
result is byte-identical either way (tests/data/test_prepare_tasks_on_ray.py holds that).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ablate.data.guard import byte_cap, read_once
from ablate.data.preprocess import RejectedImage, png_bytes, preprocess
from ablate.data.soft_reference import losses
from ablate.runtime.cluster import ray_session

IN_PROCESS_BELOW = 50  # files; below this Ray's start-up outweighs the parallelism


@dataclass(frozen=True)
class Job:
    index: int  # position in the scan / index order (dedup and rejects follow it)
    image: str
    fov: str | None
    vessel: str | None


@dataclass(frozen=True)
class Settings:
    size: int
    max_pixels: int


def process(job: Job, settings: Settings) -> dict:
    """One file's result: its content id (None when unreadable) and either its output
    row's fields or the reason it cannot be used."""
    from pathlib import Path

    rec: dict = {"id": None, "reject": None, "image": None, "fov": None, "vessel": None,
                 "orig_height": None, "orig_width": None, "fov_source": None, "pixels": None,
                 "vessel_soft": None, "vessel_area_lost": None, "vessel_length_lost": None}
    raw = None
    try:
        # Read once: the same bytes give the content id and the decoded image.
        raw = read_once(Path(job.image), byte_cap(settings.max_pixels))
        rec["id"] = hashlib.sha256(raw).hexdigest()[:16]
        p = preprocess(raw, settings.size, fov=None if job.fov is None else Path(job.fov),
                       vessel=None if job.vessel is None else Path(job.vessel), max_pixels=settings.max_pixels)
    except RejectedImage as e:
        rec["reject"] = str(e)
        return rec
    except MemoryError:
        # One file's memory, not the prepare's: the other files go on (a worker's MemoryError
        # is raised here too, inside its task).
        rec["reject"] = ("out of memory while preprocessing this file; free memory, use fewer --cpus, "
                         "or lower --max-pixels to reject such files unread")
        return rec
    finally:
        raw = None  # at most one file's bytes held at a time
    rec.update(image=png_bytes(p.image), fov=png_bytes(p.fov),
               vessel=None if p.vessel is None else png_bytes(p.vessel),
               orig_height=p.original_size[0], orig_width=p.original_size[1], fov_source=p.fov_source,
               pixels=pixels_id(p.image))
    if p.vessel is not None and p.vessel_soft is not None:
        area, length = losses(p.vessel, p.vessel_soft)
        rec.update(vessel_soft=png_bytes(p.vessel_soft), vessel_area_lost=area, vessel_length_lost=length)
    return rec


def pixels_id(image) -> str:
    """The duplicate key: what the dataset would hold, not the file's bytes, so the same
    photograph as TIFF and as PNG (or with other metadata) is one image (issue 25). The row's
    `id` stays the file's sha256: U-Net files record those ids (the leakage guard)."""
    h = hashlib.sha256(f"{image.shape}:{image.dtype}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()[:16]


def process_batch(jobs: list[Job], settings: Settings) -> list[tuple[int, dict]]:
    return [(j.index, process(j, settings)) for j in jobs]


def _batches(jobs: list[Job], size: int) -> Iterator[list[Job]]:
    for k in range(0, len(jobs), size):
        yield jobs[k : k + size]


def use_ray(n_jobs: int, cpus: int | None, address: str | None, in_process_below: int) -> bool:
    """Ray for a cluster, or when asked for always (in_process_below=0); else for jobs
    large enough to pay for its start-up, unless one CPU gains nothing from it."""
    if n_jobs == 0:
        return False
    if address or in_process_below <= 0:
        return True
    return n_jobs >= in_process_below and cpus != 1


def run(jobs: list[Job], settings: Settings, on_result: Callable[[int, dict], None], *,
        cpus: int | None = None, address: str | None = None, in_process_below: int = IN_PROCESS_BELOW) -> None:
    """Call `on_result(index, record)` once per job, in any order.

    Args:
        cpus: CPUs to use (None: every core here, or the whole cluster with `address`).
        address: a Ray cluster to join ('auto'); the source files must be readable at
            the same paths on its nodes.
        in_process_below: fewer jobs than this run in this process, without Ray (0: always Ray).
    """
    if not use_ray(len(jobs), cpus, address, in_process_below):
        for job in jobs:
            on_result(job.index, process(job, settings))
        return
    _run_ray(jobs, settings, on_result, cpus, address)


def _run_ray(jobs, settings, on_result, cpus, address) -> None:
    import ray

    # The one shared start (loopback-only listening sockets for a local Ray, issue 25); no
    # dashboard: prepare needs none, and it adds seconds of start-up.
    with ray_session(address, cpus=cpus, dashboard=False) as started:
        _stream(jobs, settings, on_result, cpus, started, ray)


def _stream(jobs, settings, on_result, cpus, started, ray) -> None:
    """Feed the jobs to Ray tasks, at most a window of batches in flight."""
    total = int(ray.cluster_resources().get("CPU", 1)) or 1
    # Twice the CPUs in flight, so a finished task's successor is already queued (a Ray
    # we started has exactly `cpus` and runs no more at once); on a Ray we joined,
    # --cpus caps the tasks in flight themselves.
    window = 2 * total if started or not cpus else cpus
    # Batches of a few files: per-task overhead (ms) stays small next to the work,
    # and results still arrive steadily for the progress bar.
    batch = max(1, min(8, len(jobs) // (4 * window)))
    task = ray.remote(num_cpus=1, max_retries=2)(process_batch)
    settings_ref = ray.put(settings)
    pending: list = []
    source = _batches(jobs, batch)
    exhausted = False
    while pending or not exhausted:
        while not exhausted and len(pending) < window:
            nxt = next(source, None)
            if nxt is None:
                exhausted = True
                break
            pending.append(task.remote(nxt, settings_ref))
        if not pending:
            break
        done, pending = ray.wait(pending, num_returns=1)
        for index, rec in ray.get(done[0]):
            on_result(index, rec)
        del done
