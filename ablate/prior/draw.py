"""Drawing a trial's samples: code grids from its prior (KV-cached sampling), decoded by its
autoencoder, written chunk by chunk (data/sample_store.py). Run as a Ray task (one per
trial), by the trial itself after its prior trains and by `ablate sample` later. A draw
continues after the last chunk present (an interrupted one resumes there) with chunks of up
to CHUNK samples; chunk k's seed depends only on the prior's seed and k, so a chunk holds the
same images whichever of them draws it, as long as the chunks before it were whole (a trial
whose `samples` is not a multiple of CHUNK ends on a short chunk, and later draws go on after it).

A conditional prior (its file records a condition, data/labels.py) draws each sample's label
first, in proportion to the train split's label counts, from the chunk's seed alone, and
the chunk stores it (`condition`: the label as the dataset spells it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ablate import storage
from ablate.data.labels import Condition
from ablate.data.sample_store import (
    CHUNK_FILE,
    CONTACT_SHEET,
    chunk_numbers,
    chunk_seed,
    contact_sheet,
    read_samples,
    write_chunk,
)
from ablate.prior.prior_file import load_prior

logger = logging.getLogger(__name__)

CHUNK = 32  # samples per chunk file: an interrupted draw loses at most this many
SHEET = 16  # samples on the contact sheet


@dataclass(frozen=True)
class DrawRequest:
    """What to draw for one trial.

    Args:
        folder: the trial's samples folder (EXP/samples/<trial>).
        prior: the prior's final checkpoint folder.
        autoencoder: the trial's final autoencoder checkpoint folder.
        total: bring the folder to at least this many samples.
        top_k, temperature: sampling settings (the trial's `prior:` block).
        precision: "auto" (bf16 autocast on CUDA for the decoder) or as in train.precision.
        use_gpu: draw on this task's GPU.
    """
    folder: str
    prior: str
    autoencoder: str
    total: int
    top_k: int | None = None
    temperature: float = 1.0
    precision: str = "auto"
    use_gpu: bool = False


def draw_samples(req: DrawRequest, threads: int = 1) -> dict:
    """Draw the chunks `req.folder` lacks up to `req.total` samples; write the contact sheet
    when it is missing. Returns {"drawn": new samples, "total": samples now, "prior_step"}."""
    import numpy as np
    import torch

    from ablate.models.checkpoint import read_checkpoint, rebuild_model
    from ablate.runtime import resolve_precision

    torch.set_num_threads(threads)
    device = "cuda" if req.use_gpu else "cpu"
    prior, saved = load_prior(req.prior, device)
    ae, _ = rebuild_model(read_checkpoint(req.autoencoder, device), device)
    autocast = resolve_precision(req.precision, device).autocast
    h, w = saved["grid"]
    condition = Condition.from_record(saved["condition"]) if "condition" in saved else None
    present = chunk_numbers(req.folder)
    have = sum(_rows(req.folder, c) for c in present)
    k = present[-1] + 1 if present else 0
    drawn = 0
    while have + drawn < req.total:
        n = min(CHUNK, req.total - have - drawn)
        seed = chunk_seed(int(saved["seed"]), k)
        generator = torch.Generator(device=device).manual_seed(seed)
        classes = None if condition is None else condition.draw(n, seed)  # on the CPU: the same on any device
        codes = prior.sample(n, None if classes is None else torch.from_numpy(classes).to(device), top_k=req.top_k,
                             temperature=req.temperature, generator=generator)
        with torch.no_grad(), autocast():
            images = ae.decode_codes(codes.view(n, h, w))[:, :3].float().clamp(0, 1)  # RGB (an edge channel dropped)
        pixels = (images.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
        labels = None if condition is None or classes is None else [condition.values[c] for c in classes]
        write_chunk(req.folder, k, pixels, seed=seed, condition=labels, top_k=req.top_k,
                    temperature=req.temperature, prior_step=int(saved["step"]))
        drawn += n
        k += 1
    sheet = storage.join(req.folder, CONTACT_SHEET)
    if not storage.is_file(sheet) and chunk_numbers(req.folder):
        storage.write_bytes(sheet, contact_sheet(read_samples(req.folder, limit=SHEET).images))
    logger.info(f"{req.folder}: {drawn} new samples drawn, {have + drawn} in all")
    return {"drawn": drawn, "total": have + drawn, "prior_step": int(saved["step"])}


def _rows(folder: str, chunk: int) -> int:
    """Samples in one chunk file (its Parquet footer)."""
    import pyarrow.parquet as pq

    path = storage.join(folder, CHUNK_FILE.format(chunk))
    if storage.is_uri(path):
        return len(storage.read_parquet(path))
    return pq.ParquetFile(path).metadata.num_rows
