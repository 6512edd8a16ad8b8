"""A trial's samples on disk (ablate.data.sample_store): chunks written once, read back in order."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.data.sample_store import (
    chunk_numbers,
    chunk_seed,
    contact_sheet,
    read_samples,
    write_chunk,
)
from ablate.errors import InvalidInput


def _images(n: int, value: int) -> np.ndarray:
    rng = np.random.default_rng(value)
    return rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)


def test_chunks_read_back_in_chunk_order_with_their_pixels(tmp_path):
    a, b = _images(3, 1), _images(2, 2)
    write_chunk(tmp_path, 1, b, seed=chunk_seed(7, 1), condition=None, top_k=None, temperature=1.0, prior_step=5)
    write_chunk(tmp_path, 0, a, seed=chunk_seed(7, 0), condition=["a", "b", "b"], top_k=16,
                temperature=0.9, prior_step=5)
    (tmp_path / "prior").mkdir()
    (tmp_path / "prior" / "chunk-00009.parquet").write_bytes(b"not ours")  # below the folder: not a chunk
    assert chunk_numbers(tmp_path) == [0, 1]
    s = read_samples(tmp_path)
    assert np.array_equal(s.images, np.concatenate([a, b]))  # PNG is lossless
    assert s.ids == ["c00000-000", "c00000-001", "c00000-002", "c00001-000", "c00001-001"]
    assert list(s.table["condition"].iloc[:3]) == ["a", "b", "b"] and s.table["condition"].iloc[3:].isna().all()
    assert list(s.table["top_k"].iloc[:3]) == [16, 16, 16] and s.table["top_k"].iloc[3:].isna().all()
    assert np.array_equal(read_samples(tmp_path, limit=4).images, np.concatenate([a, b])[:4])


def test_a_chunk_has_one_label_per_image(tmp_path):
    with pytest.raises(InvalidInput, match="samples chunk 0: 2 labels for 3 images"):
        write_chunk(tmp_path, 0, _images(3, 1), seed=1, condition=["a", "b"], top_k=None, temperature=1.0,
                    prior_step=1)
    assert chunk_numbers(tmp_path) == []


def test_a_chunk_is_never_replaced(tmp_path):
    write_chunk(tmp_path, 0, _images(2, 1), seed=1, condition=None, top_k=None, temperature=1.0, prior_step=1)
    before = (tmp_path / "chunk-00000.parquet").read_bytes()
    with pytest.raises(FileExistsError, match="chunk-00000.parquet"):
        write_chunk(tmp_path, 0, _images(2, 9), seed=1, condition=None, top_k=None, temperature=1.0, prior_step=1)
    assert (tmp_path / "chunk-00000.parquet").read_bytes() == before


def test_chunk_seeds_are_stable_and_distinct():
    seeds = {chunk_seed(s, c) for s in range(3) for c in range(50)}
    assert len(seeds) == 150 and all(0 <= x < 2**63 for x in seeds)
    assert chunk_seed(3, 4) == chunk_seed(3, 4)


def test_an_empty_folder_is_refused_by_name(tmp_path):
    with pytest.raises(InvalidInput, match=str(tmp_path)):
        read_samples(tmp_path)
    with pytest.raises(InvalidInput, match="uint8"):
        write_chunk(tmp_path, 0, np.zeros((1, 8, 8, 3)), seed=1, condition=None, top_k=None, temperature=1.0,
                    prior_step=1)


def test_contact_sheet_tiles_the_images():
    import io

    from PIL import Image

    ims = _images(6, 3)
    sheet = np.asarray(Image.open(io.BytesIO(contact_sheet(ims, columns=4, gap=2))))
    assert sheet.shape == (2 * 8 + 2, 4 * 8 + 3 * 2, 3)
    assert np.array_equal(sheet[:8, :8], ims[0]) and np.array_equal(sheet[10:18, 10:18], ims[5])
    assert (sheet[10:18, 20:] == 255).all()  # the empty cells stay white
