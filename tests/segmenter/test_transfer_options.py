"""The training options benchmarks/segmenter_transfer.py measures (issue 31): the camera
augmentation and the scale jitter switched apart, the input normalisation (clahe-green) applied
alike by the training stream and by a loaded U-Net file, and the threshold set per dataset from
unlabelled images (Otsu on the pooled probabilities)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ablate.errors import InvalidInput
from ablate.segmenter.camera import CameraJitter, training_jitter
from ablate.segmenter.input_norm import InputNorm, normalise_image
from ablate.segmenter.patches import PatchSampler, WholeImages, _affine, augment_image
from ablate.segmenter.threshold import ThresholdRule, dataset_threshold, otsu_threshold
from ablate.segmenter.unet import UNetSegmenter, fov_stats_numpy, unet_logits
from ablate.segmenter.unet_file import load_segmenter, save_segmenter
from tests.helpers.segmentation import synthetic_vessel_batch, tiny_unet

pytestmark = pytest.mark.usefixtures("one_thread")

ARCH = {"base": 4, "levels": 3}


def _row(size=32, seed=0):
    from ablate.data.preprocess import png_bytes

    img, fov, vessel = synthetic_vessel_batch(1, size, seed)
    u8 = (img[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    row = {"image": png_bytes(u8), "fov": png_bytes(fov[0].numpy()), "vessel": png_bytes(vessel[0].numpy())}
    return u8, fov[0].numpy(), {k: np.array([v], dtype=object) for k, v in row.items()}


def _dihedral(p: np.ndarray) -> list[np.ndarray]:
    """The 8 flips / quarter turns of a (C, H, W) patch."""
    return [np.rot90(q, k, axes=(1, 2)) for q in (p, p[..., ::-1]) for k in range(4)]


# ----------------------------------------------------------------------------- options


@pytest.mark.bad_input
def test_options_are_checked_before_ray_and_name_the_option(drive64, tmp_path, monkeypatch):
    from ablate.segmenter import train as train_module
    from ablate.segmenter.cli import app as seg_app

    def no_ray(*a, **k):
        raise AssertionError("Ray was reached before the options were checked")

    monkeypatch.setattr(train_module, "fit_standalone", no_ray)
    for kw, msg in (({"camera": "sideways"}, r"camera must be one of \['on', 'off'\], got 'sideways'"),
                    ({"zoom": 0.8}, r"zoom must be a number in \[1, 2.0\].*0.8"),
                    ({"zoom": 2.5}, "zoom must be"), ({"zoom": True}, "zoom must be"),
                    ({"norm": "hsv"}, r"input must be one of \['rgb', 'clahe-green'\], got 'hsv'")):
        with pytest.raises(InvalidInput, match=msg):
            train_module.train_segmenter(drive64, tmp_path / "x.pth", patch=32, **kw)
    r = CliRunner().invoke(seg_app, ["train", "--data", str(drive64), "--out", str(tmp_path / "x.pth"),
                                     "--input", "hsv"])
    assert r.exit_code == 2 and "input must be one of" in r.output, r.output
    r = CliRunner().invoke(seg_app, ["evaluate", "--data", str(drive64), "--segmenter", "ridge",
                                     "--threshold", "median"])
    assert r.exit_code == 2 and "threshold must be one of ['file', 'otsu']" in r.output, r.output


def test_camera_and_zoom_switch_apart():
    assert training_jitter("on", 1.15) == CameraJitter()
    no_zoom = training_jitter("on", 1.0)
    assert no_zoom is not None and no_zoom.zoom == 1.0 and no_zoom.geometry(np.random.default_rng(0))[1] == 1.0
    assert no_zoom.has_photometric and no_zoom.rotate_deg == CameraJitter().rotate_deg
    assert training_jitter("off", 1.0) is None
    zoom_only = training_jitter("off", 1.3)
    assert zoom_only is not None and not zoom_only.has_photometric and zoom_only.zoom == 1.3
    # Zoom only: the augmented image is the scaled photograph, its colours untouched.
    eye, fov, _ = synthetic_vessel_batch(1, 64, 2)
    img = (eye[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    f, v = fov[0].numpy(), np.zeros((64, 64), bool)
    for seed in range(3):
        angle, z = zoom_only.geometry(np.random.default_rng(seed))
        assert angle == 0.0 and z != 1.0 and 1 / 1.3 <= z <= 1.3
        a_img, a_fov, _ = augment_image(img, f, v, np.random.default_rng(seed), zoom_only)
        want_fov = _affine(f, 0.0, z, True)
        assert np.array_equal(a_fov, want_fov)
        assert np.array_equal(a_img, _affine(img, 0.0, z, False) * want_fov[..., None])


def test_the_file_records_the_input_and_older_files_read_as_rgb(tmp_path):
    import inspect

    from ablate.segmenter.cli import train as train_command
    from ablate.segmenter.input_norm import DEFAULT_INPUT
    from ablate.segmenter.train import train_segmenter

    # The command's default is the library's (the one the transfer benchmark chose).
    assert inspect.signature(train_segmenter).parameters["norm"].default is DEFAULT_INPUT
    assert inspect.signature(train_command).parameters["input_norm"].default.default == DEFAULT_INPUT.value
    m = tiny_unet(1)
    seg = load_segmenter(save_segmenter(tmp_path / "c.pth", m, ARCH, size=32, trained_on="synthetic",
                                        norm="clahe-green"))
    assert seg.norm is InputNorm.CLAHE_GREEN and seg.meta["input"] == "clahe-green"
    payload = torch.load(tmp_path / "c.pth", weights_only=True)
    del payload["input"]  # a file from before the option
    torch.save(payload, tmp_path / "old.pth")
    assert load_segmenter(tmp_path / "old.pth").norm is InputNorm.RGB


# ----------------------------------------------------------------------------- input normalisation


def test_clahe_green_is_applied_alike_by_the_training_stream_and_a_loaded_file(tmp_path):
    u8, fov, batch = _row(32)
    want = normalise_image(u8, fov, InputNorm.CLAHE_GREEN)
    assert want.dtype == np.uint8 and (want[..., 0] == want[..., 1]).all() and (want[..., 1] == want[..., 2]).all()
    assert (want[~fov] == 0).all() and not np.array_equal(want[..., 1], u8[..., 1])
    # Training: one patch the size of the image is the whole normalised image, flipped / turned;
    # its statistics are the normalised image's. Validation reads it normalised too.
    out = PatchSampler(32, 1, jitter=None, norm=InputNorm.CLAHE_GREEN)(batch)
    assert any(np.array_equal(p, want.transpose(2, 0, 1)) for p in _dihedral(out["image"][0]))
    np.testing.assert_allclose(out["stats"][0], fov_stats_numpy(want, fov), atol=1e-7)
    assert np.array_equal(WholeImages(InputNorm.CLAHE_GREEN)(batch)["image"][0], want.transpose(2, 0, 1))
    # Prediction by the loaded file: the network on that same input and statistics.
    m = tiny_unet(1)
    m.train()(torch.randn(2, 3, 32, 32))  # non-trivial BatchNorm running stats
    seg = load_segmenter(save_segmenter(tmp_path / "c.pth", m, ARCH, size=32, trained_on="synthetic",
                                        norm=InputNorm.CLAHE_GREEN))
    img = torch.from_numpy(u8).permute(2, 0, 1)[None].float() / 255
    f = torch.from_numpy(fov)[None]
    got = seg.predict(img, f)
    x = torch.from_numpy(want).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        trained = torch.sigmoid(unet_logits(m.eval(), x, f, torch.from_numpy(out["stats"][:1]))) * f
    assert torch.allclose(got, trained, atol=1e-5)
    rgb = UNetSegmenter(m, "same weights on rgb", size=32).predict(img, f)
    assert not torch.allclose(rgb, got, atol=1e-4)
    # At another size the image is brought to the training size, then normalised there.
    img64 = torch.nn.functional.interpolate(img, size=64, mode="bilinear", align_corners=False)
    f64 = torch.nn.functional.interpolate(f[:, None].float(), size=64)[:, 0] > 0.5
    x32 = torch.nn.functional.interpolate(img64, size=32, mode="bilinear", align_corners=False, antialias=True)
    f32 = torch.nn.functional.interpolate(f64[:, None].float(), size=32, mode="nearest")[:, 0] > 0.5
    u32 = (x32[0].permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    n32 = torch.from_numpy(normalise_image(u32, f32[0].numpy(), InputNorm.CLAHE_GREEN)).permute(2, 0, 1)[None] / 255
    with torch.no_grad():
        p32 = torch.sigmoid(unet_logits(m.eval(), n32.float(), f32))
    want64 = torch.nn.functional.interpolate(p32[:, None], size=64, mode="bilinear", align_corners=False)[:, 0] * f64
    assert torch.allclose(seg.predict(img64, f64), want64, atol=1e-5)


# ----------------------------------------------------------------------------- threshold per dataset


def _hand_made_maps():
    """Two images, 60 FOV pixels each: A 50 at 0.1 and 10 vessel at 0.9, B 50 at 0.3 and 10 vessel
    at 0.9. Pooled, Otsu's between-class variance is 0.0681 for the cut between 0.3 and 0.9
    against 0.0335 between 0.1 and 0.3 (w0 w1 (mu0 - mu1)^2), so any t in [0.3, 0.9) is Otsu's."""
    prob = np.zeros((2, 10, 10))
    fov = np.zeros((2, 10, 10), bool)
    fov[:, :6] = True
    vessel = np.zeros_like(fov)
    vessel[:, 5] = True
    prob[0, :5], prob[1, :5], prob[:, 5] = 0.1, 0.3, 0.9
    return prob, fov, vessel


def test_otsu_threshold_of_a_hand_made_map_pools_the_images_and_ignores_the_surround():
    from ablate.segmenter.scores import evaluate_arrays

    prob, fov, vessel = _hand_made_maps()
    t = otsu_threshold(prob, fov)
    assert 0.3 <= t < 0.9
    assert evaluate_arrays(prob, vessel, fov, t)["dice"] == 1.0
    assert evaluate_arrays(prob, vessel, fov, 0.2)["dice"] < 0.5  # a cut set elsewhere takes B's background
    noisy = prob.copy()
    noisy[~fov] = np.linspace(0.0, 1.0, (~fov).sum())  # outside the FOV: never counted
    assert otsu_threshold(noisy, fov) == t
    assert dataset_threshold(ThresholdRule.OTSU, 0.2, prob, fov)[0] == t
    assert dataset_threshold(ThresholdRule.FILE, 0.2, prob, fov) == (0.2, "file")
    # Against scikit-image's Otsu on a continuous map: the same cut, up to a bin.
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(0)
    cont = np.clip(np.where(rng.random((3, 40, 40)) < 0.12, rng.normal(0.75, 0.12, (3, 40, 40)),
                            rng.beta(1, 12, (3, 40, 40))), 0, 1)
    full = np.ones((3, 40, 40), bool)
    assert abs(otsu_threshold(cont, full) - threshold_otsu(cont.ravel(), nbins=256)) < 2 / 256
    with pytest.raises(ValueError, match="vary"):
        otsu_threshold(np.full((1, 4, 4), 0.3), np.ones((1, 4, 4), bool))


def test_evaluate_with_the_otsu_rule_sets_the_threshold_on_the_split_without_its_labels(drive64):
    from ablate.segmenter.cli import app as seg_app
    from ablate.segmenter.evaluation import evaluate_split, predict_arrays
    from ablate.segmenter.labelled import load_labelled
    from ablate.segmenter.scores import evaluate_arrays

    seg = load_segmenter("ridge")
    lab = load_labelled(drive64, "test")
    prob = predict_arrays(seg, lab.images, lab.fov)
    t = otsu_threshold(prob, lab.fov)
    m = evaluate_split(seg, drive64, "test", threshold="otsu")
    assert m["threshold"] == t != seg.threshold and m["threshold_rule"].startswith("otsu")
    assert m["dice"] == evaluate_arrays(prob, lab.vessel, lab.fov, t)["dice"]
    assert evaluate_split(seg, drive64, "test")["threshold"] == seg.threshold
    r = CliRunner().invoke(seg_app, ["evaluate", "--data", str(drive64), "--segmenter", "ridge", "--threshold", "otsu"])
    assert r.exit_code == 0 and f"(threshold {t:.2f}, otsu on the pooled probabilities" in r.output, r.output
