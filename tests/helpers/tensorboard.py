"""Reading what a run wrote for TensorBoard."""

from __future__ import annotations

from pathlib import Path


def tensorboard_events(logdir: Path):
    """An EventAccumulator over `logdir`, loaded, keeping every image and scalar (no sampling).

    Args:
        logdir: a folder of event files.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc
