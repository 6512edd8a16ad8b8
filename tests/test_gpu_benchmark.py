"""benchmarks/gpu.py without a GPU: it stops at once saying nothing was measured, and
its arithmetic and table are right on made-up figures (the measuring needs CUDA)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import REPO

SCRIPT = REPO / "benchmarks" / "gpu.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.bad_input
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
def test_without_cuda_it_fails_fast_saying_so():
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, check=False,
                         env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode != 0
    assert "needs a CUDA device" in out.stderr and "Nothing was measured" in out.stderr


def test_figures_and_table_from_made_up_measurements():
    g = _load()
    assert g.mfu(2e12, 0.01, 1e15) == pytest.approx(0.2)
    rows = g.packing_rows({1: [100.0], 2: [90.0, 90.0], 4: [70.0] * 4, 8: [30.0] * 8})
    assert [r["over_1"] for r in rows] == pytest.approx([1.0, 1.8, 2.8, 2.4])
    assert g.best_packing(rows)["trials"] == 4
    table = g.markdown({"device": "Made-up GPU", "torch": "x", "peak_tflops": 900.0, "peak_n": 8192,
                        "mfu": [{"batch": 32, "variant": "eager", "mfu": 0.41, "images_per_s": 500.0, "step_ms": 64.0}],
                        "ray": {"batch": 16, "steps": 300, "ratio": 0.9, "ray_images_per_s": 90.0,
                                "bare_images_per_s": 100.0},
                        "packing": rows, "projection": [{"setting": "1 trial per GPU, 1 GPU(s)", "wall_h": 30.0}],
                        "skipped": []})
    assert "Device: Made-up GPU" in table
    assert "| MFU bf16 paper256 256 px | batch 32, eager | 41.0% (500 img/s, 64.0 ms/step) | meets target 0.4 |" in table
    assert "| 0.900 (90 vs 100 img/s) | misses target 0.95 |" in table
    assert "2.80x one trial | meets target 2.5 |" in table
    assert "30.0 h projected" in table
