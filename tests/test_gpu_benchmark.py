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
    sys.modules[spec.name] = mod  # a dataclass looks its module up there
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


def _load_pilot():
    spec = importlib.util.spec_from_file_location("gpu_pilot", REPO / "benchmarks" / "gpu_pilot.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_pilot_steps_follow_the_measured_packing_and_stay_in_bounds():
    p = _load_pilot()
    packing = [{"trials": 1, "images_per_s": 400.0}, {"trials": 4, "images_per_s": 1000.0},
               {"trials": 8, "images_per_s": 1200.0}]
    assert p.rate_when_packed(packing, 6) == pytest.approx(1100.0)  # halfway between 4 and 8
    assert p.rate_when_packed(packing, 12) == 1200.0 and p.rate_when_packed(packing, 1) == 400.0
    steps, why = p.steps_that_fit({"packing": packing}, train_s=100.0, batch=16)
    assert steps == int(1100.0 / 6 * p.SAFETY * 100 / 16) and "6 packed" in why
    assert p.steps_that_fit({"packing": packing}, train_s=1.0, batch=16)[0] == 100  # the floor
    assert p.steps_that_fit({}, train_s=100.0, batch=16) == (100, p.steps_that_fit({}, 1.0, 16)[1])


def test_pilot_grid_fills_steps_and_the_gan_start_and_changes_nothing_else():
    import yaml

    p = _load_pilot()
    grid = p.pilot_grid(p.GRID, 1000, "cuda")
    template = yaml.safe_load(p.GRID.read_text())
    assert grid["base"]["train"]["steps"] == 1000 and grid["base"]["losses"]["adversarial"]["start_step"] == 300
    assert grid["combinations"] == template["combinations"] and grid["seeds"] == [0, 1, 2]
    assert grid["base"]["model"] == {"preset": "paper256"} and grid["base"]["data"]["size"] == 256
    assert grid["questions"]["q2"]["primary"] == ["border_width_error", "cldice"]
    check = p.pilot_grid(p.GRID, 20, "cpu")
    assert check["name"].endswith("_cpu_check") and check["base"]["model"] == {"preset": "tiny"}


def test_trimmed_wheel_keeps_modes_and_drops_the_named_entries(tmp_path):
    import zipfile

    spec = importlib.util.spec_from_file_location("gpu_carry", REPO / "benchmarks" / "gpu_carry.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    src = tmp_path / "in" / "pkg-1.0-py3-none-any.whl"
    src.parent.mkdir()
    with zipfile.ZipFile(src, "w") as z:
        exe = zipfile.ZipInfo("pkg/bin/tool")
        exe.external_attr = 0o755 << 16
        z.writestr(exe, b"#!/bin/sh\n")
        z.writestr("pkg/jars/big.jar", b"x" * 100)
        z.writestr("pkg-1.0.dist-info/RECORD", "pkg/bin/tool,sha256=a,10\npkg/jars/big.jar,sha256=b,100\n")
    out = mod.trim_wheel(src, tmp_path / "out", ["pkg/jars/"])
    with zipfile.ZipFile(out) as z:
        assert z.namelist() == ["pkg/bin/tool", "pkg-1.0.dist-info/RECORD"]
        assert z.getinfo("pkg/bin/tool").external_attr >> 16 == 0o755
        assert z.read("pkg-1.0.dist-info/RECORD").decode() == "pkg/bin/tool,sha256=a,10\n"
    with pytest.raises(SystemExit, match="replace its source"):
        mod.trim_wheel(src, src.parent, ["pkg/jars/"])
    with pytest.raises(SystemExit, match="exists; remove it"):
        mod.trim_wheel(src, tmp_path / "out", ["pkg/jars/"])
