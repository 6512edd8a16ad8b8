"""Steps trained, shown in the driver while one Train run fits (`fm pretrain`,
`segmenter train`): Ray Train calls its callbacks in its controller actor, not here, so
a callback there puts each reported step on a Ray queue and a thread here moves the
progress display (`progress.Progress`: a bar on a terminal, plain lines otherwise). A
configuration error the workers reported (runtime/config_errors.py) travels the same way, so
the driver can raise it: Ray Train's result keeps only the reports that carried a checkpoint."""

from __future__ import annotations

import contextlib
import threading

from ray.train import UserCallback
from ray.util.queue import Empty, Queue

from ablate.runtime.config_errors import CONFIG_ERROR
from ablate.ui.progress import Progress


class StepsToDriver(UserCallback):
    """In the Train controller: the step every report carries, and a configuration error,
    to the driver's queue as ("step", n) / (CONFIG_ERROR, message). On the driver's own copy,
    `config_error` is the message once `step_progress` has read it."""

    def __init__(self, queue: Queue):
        self.queue = queue
        self.config_error: str | None = None

    def after_report(self, run_context, metrics, checkpoint):
        first = metrics[0] if metrics else {}
        if first.get(CONFIG_ERROR) is not None:
            self.queue.put((CONFIG_ERROR, str(first[CONFIG_ERROR])))
        if first.get("step") is not None:
            self.queue.put(("step", int(first["step"])))


@contextlib.contextmanager
def step_progress(label: str, total: int):
    """`with step_progress(name, steps) as callback:` fit with `callbacks=(callback,)`; after
    the block, `callback.config_error` is the configuration error a worker reported, or None."""
    # No CPU: the placement gives every CPU to the workers and Ray Data.
    queue = Queue(actor_options={"num_cpus": 0})
    stop = threading.Event()
    callback = StepsToDriver(queue)
    with Progress(label, total, "steps") as bar:

        def take(item: tuple[str, object]) -> None:
            kind, value = item
            if kind == CONFIG_ERROR:
                callback.config_error = str(value)
            else:
                bar.advance(max(0, min(int(value), total) - bar.done))  # type: ignore[call-overload]

        def pump() -> None:
            while not stop.is_set():
                try:
                    take(queue.get(timeout=1.0))
                except Empty:
                    continue
            while not queue.empty():  # what arrived after the last poll (the run's final reports)
                take(queue.get_nowait())

        thread = threading.Thread(target=pump, name="ablate-step-progress", daemon=True)
        thread.start()
        try:
            yield callback
        finally:
            stop.set()
            thread.join()
            queue.shutdown()
