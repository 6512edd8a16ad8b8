"""The leakage guard (ablate.segmenter.leakage): a U-Net file records the content ids of its
training images, and scoring refuses any of them, by name."""

from __future__ import annotations

import pytest

from ablate.segmenter.evaluation import evaluate_split
from ablate.segmenter.leakage import TrainedOnImages, check_not_trained_on, split_ids, unchecked_reason
from ablate.segmenter.unet import build_unet
from ablate.segmenter.unet_file import load_segmenter, save_segmenter

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.bad_input
def test_a_trained_on_image_is_refused_by_name(drive32, tmp_path):
    train = split_ids(drive32, ["train"])
    assert len(train) >= 10 and all(len(i) == 16 for i in train)
    arch = {"base": 4, "levels": 2}
    f = save_segmenter(tmp_path / "unet.pth", build_unet(arch), arch, size=32, trained_on="drive32 train",
                       trained_ids=train)
    seg = load_segmenter(f)
    assert unchecked_reason(seg) is None
    with pytest.raises(TrainedOnImages) as ex:
        evaluate_split(seg, drive32, "train")
    first_id, first_source = next(iter(train.items()))
    assert first_source in str(ex.value) and first_id in str(ex.value) and "trained on" in str(ex.value)
    assert "_training" in first_source  # DRIVE's training images, named as the dataset names them
    m = evaluate_split(seg, drive32, "test")  # never trained on: scored
    assert m["n_images"] == 20
    # one trained-on image among unseen ones is enough to refuse, and it is the one named
    test = split_ids(drive32, ["test"])
    ids = list(test) + [first_id]
    with pytest.raises(TrainedOnImages, match=rf"1 of the {len(ids)} image\(s\).*{first_source}"):
        check_not_trained_on(seg, ids)


@pytest.mark.bad_input
def test_a_file_without_ids_says_it_cannot_be_checked(tmp_path):
    arch = {"base": 4, "levels": 2}
    seg = load_segmenter(save_segmenter(tmp_path / "old.pth", build_unet(arch), arch, size=32, trained_on="?"))
    assert "records no trained-on image ids" in unchecked_reason(seg)
    assert unchecked_reason(load_segmenter("ridge")) is None
