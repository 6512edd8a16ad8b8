"""The vessel judge measured on the originals it judges (ablate.evaluate.judge_reliability, issue 31):
what `ablate evaluate` records in eval/notes.json `judge`.

No test here starts Ray: evaluations run through tests/evaluate/test_run.py's FakeRay (each task
at once in this process); the pipeline's code is the real one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.evaluate.test_run import FakeRay, evaluate, experiment


def test_map_agreement_is_the_dice_of_the_two_maps_inside_the_fov():
    """Hand-made maps: image 0 shares 2 of the judge's 4 vessel pixels with the ridge map's 4
    (Dice 2*2/8 = 0.5), plus a pixel outside the FOV set in one map only (not counted); image 1 is
    empty in both (Dice 1 by segmenter/scores.py's convention); image 2 has no common pixel (0)."""
    from ablate.evaluate.judge_reliability import map_agreement

    a, b = np.zeros((3, 4, 4), bool), np.zeros((3, 4, 4), bool)
    fov = np.ones((3, 4, 4), bool)
    fov[:, 3, 3] = False
    a[0, 0, :4] = True
    b[0, 0, :2] = True
    b[0, 1, :2] = True
    a[0, 3, 3] = True  # outside the FOV: would make it 4/9 if counted
    a[2, 2, 0] = b[2, 2, 1] = True
    assert map_agreement(a, b, fov).tolist() == [0.5, 1.0, 0.0]


def test_judge_record_pools_the_chunks_and_skips_the_agreement_of_a_ridge_judge():
    """The agreement is the mean over every image of every chunk (labelled or not); a ridge judge
    gets no agreement, with the reason."""
    from types import SimpleNamespace

    from ablate.evaluate.judge_reliability import judge_record

    unet = SimpleNamespace(name="unet:x", threshold=0.5)
    chunks = [{"agreement": [0.5, 0.7], "prob": None, "ridge_prob": None},
              {"agreement": [0.9], "prob": None, "ridge_prob": None}]
    none = np.zeros(3, bool)
    rec = judge_record(unet, 32, chunks, np.zeros((3, 2, 2), bool), np.ones((3, 2, 2), bool), none)
    assert rec["ridge_agreement"] == pytest.approx(0.7) and rec["ridge_agreement_min"] == 0.5
    assert rec["images"] == 3 and rec["masks"] == 0 and "dice" not in rec
    ridge = SimpleNamespace(name="ridge:meijering+otsu", threshold=0.5)
    rec = judge_record(ridge, 32, [{"agreement": None, "prob": None, "ridge_prob": None}],
                       np.zeros((1, 2, 2), bool), np.ones((1, 2, 2), bool), np.zeros(1, bool))
    assert "ridge_agreement" not in rec and "ridge filter itself" in rec["ridge_agreement_skipped"]


def labelled_data(drive: Path, root: Path, masked: list[str], unmasked: list[str], size: int = 32) -> Path:
    """DRIVE test images prepared at `size`, `masked` with their manual vessel mask, `unmasked` without."""
    from ablate.data.shards import prepare

    root.parent.mkdir(parents=True, exist_ok=True)
    index = root.parent / f"{root.name}-index.csv"
    rows = [f"{drive}/images/{k}_test.tif,test,{drive}/fov/{k}_test.gif,"
            + (f"{drive}/vessels/{k}_test.gif" if k in masked else "") for k in sorted(masked + unmasked)]
    rows.append(f"{drive}/images/21_training.tif,train,{drive}/fov/21_training.gif,")
    index.write_text("path,split,fov,vessel\n" + "\n".join(rows) + "\n")
    prepare(None, root, size=size, index=index, cpus=1)
    return root


def tiny_unet(path: Path, size: int = 32) -> Path:
    """A U-Net file with random weights (never presented as trained: only its scores' arithmetic is tested)."""
    import torch

    from ablate.segmenter.unet import build_unet
    from ablate.segmenter.unet_file import save_segmenter

    torch.manual_seed(0)
    return save_segmenter(path, build_unet({"base": 4, "levels": 2}), {"base": 4, "levels": 2}, size=size,
                          trained_on="random weights (test)")


@pytest.mark.usefixtures("no_ray_start")
def test_evaluate_records_the_judges_scores_as_segmenter_evaluation_computes_them(tmp_path, drive_dir, monkeypatch):
    """eval/notes.json `judge`: on a test split where 3 of 4 images have a manual mask, evaluated in
    chunks of 2 (so the pooling crosses chunks, one of them half unlabelled), the recorded Dice and
    AUC equal `ablate segmenter evaluate`'s (segmenter/evaluation.py: another loader, another
    batching) for the U-Net and for the ridge filter; the agreement is the mean over all 4 images of
    the per-image Dice between the U-Net's and the ridge filter's evaluation maps."""
    from ablate.evaluate import run
    from ablate.evaluate.judge_reliability import map_agreement
    from ablate.evaluate.reconstruct import to_tensor, vessel_maps
    from ablate.evaluate.splits import load_test_split
    from ablate.segmenter.evaluation import evaluate_split
    from ablate.segmenter.unet_file import load_segmenter

    monkeypatch.setitem(sys.modules, "ray", FakeRay())
    monkeypatch.setattr(run, "CHUNK", 2)
    data = labelled_data(drive_dir, tmp_path / "lab" / "prepared", masked=["07", "09", "10"], unmasked=["08"])
    exp = experiment(tmp_path, data)
    unet = tiny_unet(tmp_path / "unet.pth")
    evaluate(exp, segmenter=str(unet))
    (rec,) = json.loads((exp / "eval" / "notes.json").read_text())["judge"]
    want = evaluate_split(load_segmenter(str(unet)), data)
    ridge = evaluate_split(load_segmenter("ridge"), data)
    assert (rec["images"], rec["masks"], want["n_images"]) == (4, 3, 3)
    assert rec["dice"] == pytest.approx(want["dice"], abs=1e-12)
    assert rec["auc"] == pytest.approx(want["auc"], abs=1e-9)  # the U-Net's batches differ: float noise only
    assert rec["ridge_dice"] == pytest.approx(ridge["dice"], abs=1e-12)
    t = load_test_split(str(data), 32)
    x = to_tensor(t["images"])
    agree = map_agreement(vessel_maps(load_segmenter(str(unet)), x, t["fov"]),
                          vessel_maps(load_segmenter("ridge"), x, t["fov"]), t["fov"])
    assert len(agree) == 4 and rec["ridge_agreement"] == pytest.approx(agree.mean(), abs=1e-12)

    evaluate(exp, segmenter="ridge")  # the ridge judge: scored against the masks, not against itself
    (rec,) = json.loads((exp / "eval" / "notes.json").read_text())["judge"]
    assert rec["dice"] == pytest.approx(ridge["dice"], abs=1e-12) and rec["auc"] == pytest.approx(ridge["auc"], abs=1e-12)
    assert "ridge_agreement" not in rec and rec["ridge_agreement_skipped"]


def test_old_notes_without_the_record_still_read_and_a_wrong_one_is_named():
    from ablate.schemas import Notes, problem

    assert problem({"segmenter": "x", "test_images": 20}, Notes) is None  # written before issue 31
    assert Notes.model_validate({"segmenter": "x"}).judge == []
    assert problem({"judge": [{"segmenter": "u", "image_size": 0, "images": 3}]}, Notes) == \
        "judge[0].image_size is 0, expected an integer >= 1"
    assert problem({"judge": [{"segmenter": "u", "image_size": 32, "images": 3, "dice": "0.7"}]}, Notes) == \
        "judge[0].dice is a string, expected a number"
