"""Steps trained, shown in the driver while one Train run fits (`fm pretrain`,
`segmenter train`): Ray Train calls its callbacks in its controller actor, not here, so
a callback there puts each reported step on a Ray queue and a thread here moves the
progress display (`progress.Progress`: a bar on a terminal, plain lines otherwise)."""

from __future__ import annotations

import contextlib
import threading

from ray.train import UserCallback
from ray.util.queue import Empty, Queue

from ablate.ui.progress import Progress


class StepsToDriver(UserCallback):
    """In the Train controller: the step every report carries, to the driver's queue."""

    def __init__(self, queue: Queue):
        self.queue = queue

    def after_report(self, run_context, metrics, checkpoint):
        step = metrics[0].get("step") if metrics else None
        if step is not None:
            self.queue.put(int(step))


@contextlib.contextmanager
def step_progress(label: str, total: int):
    """`with step_progress(name, steps) as callback:` fit with `callbacks=(callback,)`."""
    # No CPU: the placement gives every CPU to the workers and Ray Data.
    queue = Queue(actor_options={"num_cpus": 0})
    stop = threading.Event()
    with Progress(label, total, "steps") as bar:

        def pump() -> None:
            while not stop.is_set():
                try:
                    step = queue.get(timeout=1.0)
                except Empty:
                    continue
                bar.advance(max(0, min(step, total) - bar.done))

        thread = threading.Thread(target=pump, name="ablate-step-progress", daemon=True)
        thread.start()
        try:
            yield StepsToDriver(queue)
        finally:
            stop.set()
            thread.join()
            queue.shutdown()
