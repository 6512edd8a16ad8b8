"""A label column of a prepared dataset (an --index file's column, data/index.py) as the
condition of a code prior (`prior: {condition: COLUMN}`): its values numbered in the order
manifest.json lists them (sorted), and how many train images carry each, the frequencies
a conditional prior's samples are drawn in (ablate/prior/draw.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Condition:
    """Args:
        column: the label column.
        values: its values; class k is values[k].
        train_counts: train images carrying each value (same order).
    """
    column: str
    values: tuple[str, ...]
    train_counts: tuple[int, ...]

    @classmethod
    def of_dataset(cls, data_dir: str, column: str) -> Condition:
        """The column as the dataset's manifest lists it; ValueError naming the dataset when it
        has no such column or a train image without a value (the launch refuses both first,
        ablate/train/grid.py)."""
        from ablate.data.shards import load_manifest

        manifest = load_manifest(data_dir)
        label = manifest.labels.get(column)
        if label is None:
            raise ValueError(f"{data_dir}: no label column {column!r} (its label columns: "
                             f"{', '.join(sorted(manifest.labels)) or 'none'})")
        if label.missing.get("train", 0):
            raise ValueError(f"{data_dir}: {label.missing['train']} train images have no {column!r} label")
        counts = label.counts.get("train", {})
        return cls(column, tuple(label.values), tuple(int(counts.get(v, 0)) for v in label.values))

    @classmethod
    def from_record(cls, record: dict) -> Condition:
        """Read back from `record` (a prior file's or a codes record's `condition`)."""
        return cls(str(record["column"]), tuple(record["values"]), tuple(int(n) for n in record["train_counts"]))

    def record(self) -> dict:
        """What a prior file and a codes record hold (plain JSON types)."""
        return {"column": self.column, "values": list(self.values), "train_counts": list(self.train_counts)}

    def classes(self, labels) -> np.ndarray:
        """Each label's class (int64); ValueError for a missing or unknown one."""
        index = {v: k for k, v in enumerate(self.values)}
        try:
            return np.array([index[v] for v in labels], dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"{self.column}: {e.args[0]!r} is not one of its values {list(self.values)}") from None

    def draw(self, n: int, seed: int) -> np.ndarray:
        """n classes drawn in proportion to the train split's counts, from `seed` alone."""
        p = np.asarray(self.train_counts, dtype=np.float64)
        return np.random.default_rng(seed).choice(len(p), size=n, p=p / p.sum()).astype(np.int64)
