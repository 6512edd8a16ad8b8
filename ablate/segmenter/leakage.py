"""The leakage guard: a segmenter never scores an image it was trained on.

`ablate segmenter train` stores in the U-Net file the content ids (`id`: sha256 of the
source file, first 16 hex digits, as `ablate prepare` assigns them) and source names of
every image it trained on (`trained_ids`: {id: source}). Scoring a set of images with that
file (`ablate evaluate`, `ablate segmenter evaluate`) first calls `check_not_trained_on`,
which raises `TrainedOnImages` naming each overlapping image. A file written before the
ids were stored cannot be checked; `unchecked_reason` says so, and callers print it.
The ridge fallback trains on nothing.
"""

from __future__ import annotations

import os

from ablate.errors import AblateError


class TrainedOnImages(AblateError, ValueError):
    """The segmenter was trained on images it is asked to score."""


def split_ids(data_dir: str | os.PathLike, splits: list[str]) -> dict[str, str]:
    """{content id: source name} of the images of these splits of a prepared dataset."""
    import pyarrow.parquet as pq

    from ablate.data.shards import shard_paths

    out: dict[str, str] = {}
    for split in splits:
        for p in shard_paths(data_dir, split, verify=False):
            t = pq.read_table(p, columns=["id", "source"]).to_pydict()
            out.update(zip(t["id"], t["source"]))
    return out


def trained_ids(seg) -> dict[str, str] | None:
    """The {id: source} a segmenter was trained on; {} for one trained on nothing (ridge);
    None when its file predates the record."""
    if getattr(seg, "name", "").startswith("ridge:"):
        return {}
    meta = getattr(seg, "meta", None) or {}
    ids = meta.get("trained_ids")
    return dict(ids) if ids is not None else None


def unchecked_reason(seg) -> str | None:
    if trained_ids(seg) is None:
        return (f"segmenter {seg.name}: its file records no trained-on image ids (written before they were "
                "stored), so evaluation cannot check that it never scores an image it trained on; retrain it")
    return None


def check_not_trained_on(seg, ids, sources=None, where: str = "") -> None:
    """Raise TrainedOnImages when any of `ids` (content ids; `sources` their names, same order)
    is one the segmenter was trained on."""
    known = trained_ids(seg) or {}
    sources = list(sources) if sources is not None else [None] * len(list(ids))
    hit = [(i, s or known[i]) for i, s in zip(ids, sources) if i in known]
    if hit:
        names = ", ".join(f"{s} (id {i})" for i, s in hit[:10]) + (f" and {len(hit) - 10} more" if len(hit) > 10 else "")
        raise TrainedOnImages(f"segmenter {seg.name} was trained on {len(hit)} of the {len(sources)} image(s) to be "
                              f"scored{' in ' + where if where else ''}: {names}. Its vessel maps of those images "
                              "would flatter it; score a split it never saw, or train it without them")
