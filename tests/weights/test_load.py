"""Loading pretrained files (ablate.weights.load): weights that cannot be loaded, the user's or
our own checkpoints, are one line naming the file and the fix, never a traceback; nothing the
user named is deleted. No Ray here: every check calls the code under test directly."""

from __future__ import annotations

import pytest

from ablate.weights import WeightsMissing
from ablate.weights.table import TABLE
from tests.helpers.text import one_line

VGG = TABLE["vgg16"]


# ----------------------------------------------------------------------------- 5. weights that cannot be loaded

def _unloadable(tmp_path) -> dict:
    import argparse
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"model": {}, "args": argparse.Namespace(lr=1)}, buf)  # RETFound's own habit: an object in the file
    return {"garbage": b"\x00\xffthis is not a weights file" * 50, "empty": b"",
            "truncated_zip": buf.getvalue()[: len(buf.getvalue()) // 2], "pickled_object": buf.getvalue()}


def assert_one_line_naming(err: BaseException, path, *fix: str) -> None:
    msg = one_line(str(err))
    assert msg.startswith(f"{path}: cannot be loaded as "), msg
    assert "weights_only=False" not in msg and "weights_only` set to `False`" not in msg  # never the unsafe advice
    for words in fix:
        assert words in msg, msg


@pytest.mark.bad_input
@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated_zip", "pickled_object"])
def test_unloadable_weights_are_one_line_naming_the_file_and_the_fix(caches, tmp_path, monkeypatch, kind):
    from ablate.backbones.inception import load_inception_script
    from ablate.backbones.lpips_heads import load_lpips_heads
    from ablate.backbones.retfound import frozen_vit
    from ablate.losses import LOSSES

    bad = tmp_path / f"{kind}.pth"
    bad.write_bytes(_unloadable(tmp_path)[kind])
    with pytest.raises(WeightsMissing) as e:  # LPIPS with `weights:` naming the file
        LOSSES.build("lpips", weights=str(bad))
    assert_one_line_naming(e.value, bad, "torchvision VGG16 weights", f"${VGG.env}", "ablate weights fetch vgg16")
    why = {"garbage": "not a torch weights file", "empty": "empty or truncated", "truncated_zip": "not a whole torch file",
           "pickled_object": "stores a Python object (argparse.Namespace)"}[kind]
    assert why in str(e.value)
    with pytest.raises(WeightsMissing) as e:
        load_lpips_heads(bad)
    assert_one_line_naming(e.value, bad, "LPIPS v0.1 VGG heads")
    with pytest.raises(WeightsMissing) as e:  # RETFound's loader (foundation loss, FD metric)
        frozen_vit({"img_size": 32, "patch_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 2}, True, bad, "retfound_mae")
    assert_one_line_naming(e.value, bad, "ViT checkpoint", "`weights` option of foundation")
    monkeypatch.setenv(TABLE["fundus_mae"].env, str(bad))  # our MAE, named by its variable
    with pytest.raises(WeightsMissing) as e:
        LOSSES.build("foundation", model="fundus_mae")
    assert_one_line_naming(e.value, bad, "fundus MAE checkpoint", "ablate fm pretrain")
    with pytest.raises(WeightsMissing) as e:  # FID's Inception (TorchScript)
        load_inception_script(bad)
    assert_one_line_naming(e.value, bad, "FID Inception", "$ABLATE_FID_INCEPTION_WEIGHTS")
    assert bad.read_bytes() == _unloadable(tmp_path)[kind]  # the user's file: reported, never touched


@pytest.mark.bad_input
@pytest.mark.parametrize("what", ["segmenter", "fundus_mae"])
def test_our_own_checkpoints_that_do_not_load_are_one_line_naming_the_file(tmp_path, what):
    """`ablate segmenter evaluate --weights` and the fundus MAE loader read garbage as one line
    naming the file and how to make a good one, not torch's weights_only advice."""
    from ablate.weights.load import WeightsUnreadable

    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"\x80\x04not a torch file at all" * 10)
    if what == "segmenter":
        from ablate.segmenter.unet_file import load_segmenter as load
        fix = "ablate segmenter train"
    else:
        from ablate.fm.mae import load_mae as load
        fix = "ablate fm pretrain"
    with pytest.raises(WeightsUnreadable) as e:
        load(bad)
    msg = str(e.value)
    assert str(bad) in msg and fix in msg and "\n" not in msg and "weights_only" not in msg
