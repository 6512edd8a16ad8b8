"""The paper's `losses` grid from a fresh machine, with every pretrained file coming the
way it would for a user: VGG16 fetched over HTTP on first use (a stand-in server on
127.0.0.1 in download.pytorch.org's role), RETFound asked of a Hugging Face endpoint
stand-in that refuses it (gated, no token: 401), so `foundation: auto` falls back to a
fundus MAE that `ablate launch` pretrains on the grid's own data as a first stage.

The six combinations run end to end (one seed, tiny preset, 32 px, a few steps) through
the real CLI in a subprocess with its own Ray, caches and environment. The VGG16 file
served is a STAND-IN (random values): its sha256 cannot start with torchvision's 397923af,
so the CLI process alone gets the stand-in's prefix put into the table before it starts
(the one line of `DRIVER`); the workers trust the verification record the driver wrote.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile

import pandas as pd
import pytest
import yaml

from ablate.config import find_grid
from ablate.weights.table import TABLE
from tests.weights_servers import FileServer, HubServer

pytestmark = pytest.mark.ray

DRIVER = """
import dataclasses, sys
from ablate.weights.table import TABLE
# TEST ONLY: the served VGG16 is a stand-in, so the expected prefix is the stand-in's.
TABLE["vgg16"] = dataclasses.replace(TABLE["vgg16"], sha256_prefix=sys.argv[1])
from ablate.cli import app
app(sys.argv[2:], prog_name="ablate")
"""


def _tiny_losses_grid(tmp_path):
    """The `losses` search space as written, scaled down: one seed, tiny preset, 32 px, 4 steps."""
    raw = yaml.safe_load(find_grid("losses").read_text())
    raw["base"]["data"]["size"] = 32
    raw["base"]["model"]["preset"] = "tiny"
    raw["base"]["train"].update(steps=4, batch_size=4, log_every=2, image_every=4, val_every=4, val_batches=1,
                                checkpoint_every=4)
    raw["seeds"] = [0]
    for body in raw["combinations"].values():  # every term switched on within the 4 steps
        for term in body.get("losses", {}).values():
            if isinstance(term, dict) and "start_step" in term:
                term["start_step"] = min(term["start_step"], 2)
    raw["base"]["losses"]["adversarial"]["start_step"] = 2
    path = tmp_path / "losses_tiny.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_losses_grid_runs_every_combination_from_a_fresh_machine(drive32, vgg_file, tmp_path):
    body = vgg_file[0].read_bytes()
    files, hub = FileServer(), HubServer()
    try:
        vgg_url = files.serve(f"/models/{TABLE['vgg16'].file}", body)
        hub.serve("YukunZhou/RETFound_mae_natureCFP", TABLE["retfound"].file, b"never served",
                  gated_tokens={"a-token-this-machine-does-not-have"})
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ABLATE_", "HF_", "TORCH_HOME"))}
        env.update(ABLATE_CACHE=str(tmp_path / "ablate"), TORCH_HOME=str(tmp_path / "torch"),
                   HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=hub.url, HF_HUB_DISABLE_TELEMETRY="1",
                   ABLATE_VGG16_URL=vgg_url, ABLATE_RAY_TMP=tempfile.mkdtemp(prefix="abl-ray-", dir="/tmp"))
        out = tmp_path / "exp"
        cmd = [sys.executable, "-c", DRIVER, hashlib.sha256(body).hexdigest()[:8], "launch",
               "--grid", str(_tiny_losses_grid(tmp_path)), "--data", str(drive32), "--out", str(out),
               "--concurrent", "2", "--fm-steps", "2", "--segmenter", "ridge"]
        proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=1200)
    finally:
        files.stop()
        hub.stop()
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]

    df = pd.read_parquet(out / "results.parquet")
    assert sorted(df["combination"]) == sorted(["base", "lpips", "retfound-fundus_mae", "edge", "edge_lpips",
                                                "edge_retfound-fundus_mae"])
    assert (df["status"] == "done").all() and (df["steps"] == 4).all(), df[["trial", "status", "error"]]
    # The foundation arms are our MAE, said in their name and their config, never RETFound.
    fm = df[df["combination"].str.endswith("fundus_mae")]
    assert (fm["config.loss.foundation.options.model"] == "fundus_mae").all()
    assert fm["val/loss/foundation[fundus_mae]"].notna().all()  # the logs' tag names the model too
    # RETFound was asked for once and refused: the message says what to do; nothing was cached.
    assert any(p.startswith("/YukunZhou/RETFound_mae_natureCFP/") for _, p, _ in hub.requests)
    assert "huggingface.co/YukunZhou/RETFound_mae_natureCFP" in log and "hf auth login" in log
    assert not list((tmp_path / "hf").rglob("*.pth"))
    # ... so the fundus MAE stage ran first, on this dataset, and its file is kept for the next grid.
    assert "stage 1 of 2: pretraining our fundus MAE" in log
    stage_files = list((tmp_path / "ablate" / "weights").glob("fundus_mae-*.pth"))
    assert len(stage_files) == 1
    assert (fm["config.loss.foundation.options.weights"] == str(stage_files[0])).all()
    # VGG16: downloaded once by the driver, verified, then read from the cache by every trial.
    assert [m for m, _, _ in files.requests] == ["GET"]
    assert (tmp_path / "torch" / "hub" / "checkpoints" / TABLE["vgg16"].file).is_file()
    assert (out / "report" / "index.html").is_file()
