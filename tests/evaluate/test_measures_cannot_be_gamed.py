"""No per-image vessel measure that may vote on a question can be beaten by an artefact (issue 27).

On a synthetic fundus photograph (tests.helpers.vessel_drawings.fundus_with_vessels), every
"reconstruction" goes the way evaluation takes it: the ridge segmenter cuts it at its original's
Otsu level (reference_levels / vessel_maps, as evaluate/run.py and trial_stages.py do), the CPU
stage (trial_stages.morphology_stage) writes its per-image row, and the report reads that row
(collect.tidy_per_image: abs_delta_<f> = |delta_<f>|). The measures are those the catalogue
lets vote (morphology, topology, vessel_border), so a new voting vessel measure is tested here too.

* A faithful copy scores each measure's best value: 1 for dice / cldice, 0 for every error.
* No artefact (halo / ringing, over-enhancement, noise, blur, faded or removed vessels) scores
  better than the copy, and every score is a number: a NaN is left out of a trial's mean over the
  images (the report skips it), so a NaN where the copy has a value is a way to win.
* Where an artefact changes what a measure measures, it scores strictly worse (which pairs are
  strict, and why the others may tie, is said at STRICT).
* A vessel-free image (one colour in the FOV: the segmenter finds nothing) scores each measure's
  value for "no vessel" (VESSEL_FREE_VALUE), strictly worse than the copy.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage as ndi

from ablate.evaluate import morphology, topology, vessel_border
from ablate.evaluate.automorph import DEFINITIONS, features_for
from ablate.evaluate.catalogue import lookup
from ablate.evaluate.morphology import FEATURES
from ablate.evaluate.reconstruct import reference_levels, to_tensor, vessel_maps
from ablate.evaluate.topology import PATCH, betti_counts
from ablate.evaluate.trial_stages import morphology_stage
from ablate.evaluate.vessel_border import WIDTH_FLOOR
from ablate.report.collect import tidy_per_image
from ablate.segmenter.unet_file import load_segmenter
from tests.helpers.vessel_drawings import fundus_with_vessels, halve_vessel_contrast

pytestmark = pytest.mark.usefixtures("one_thread")


def voting_vessel_measures() -> list[str]:
    """Every per-image vessel measure the catalogue lets vote (abs_delta_ spelled out per feature)."""
    out = []
    for m in (*morphology.METRICS, *topology.METRICS, *vessel_border.METRICS):
        if m.may_vote and not m.per_set:
            out += [f"{m.name}{f}" for f in FEATURES] if m.family else [m.name]
    return out


MEASURES = voting_vessel_measures()
COPY = "faithful copy"
VESSEL_FREE = "vessel-free (one colour in the FOV)"


def _per_channel(x: np.ndarray, f) -> np.ndarray:
    return np.stack([f(c) for c in x])


ARTEFACTS = {  # name -> (image (3, H, W) in [0, 1], the original's vessel map R, FOV) -> the "reconstruction"
    "unsharp mask": lambda x, r, fov: x + (x - _per_channel(x, lambda c: ndi.gaussian_filter(c, 1.5))),
    "bright ring 2-3 px outside the vessels": lambda x, r, fov: x + 0.15 * (
        ndi.binary_dilation(r, iterations=3) & ~ndi.binary_dilation(r, iterations=1)),
    "global contrast x2 about the mean": lambda x, r, fov: (m := x[:, fov].mean(1)[:, None, None]) + 2 * (x - m),
    "gamma 0.5": lambda x, r, fov: x ** 0.5,
    "gamma 2": lambda x, r, fov: x ** 2,
    "noise SD 0.03": lambda x, r, fov: x + np.random.default_rng(0).normal(0, 0.03, x.shape),
    "blur sigma 1": lambda x, r, fov: _per_channel(x, lambda c: ndi.gaussian_filter(c, 1)),
    "blur sigma 2": lambda x, r, fov: _per_channel(x, lambda c: ndi.gaussian_filter(c, 2)),
    "vessels faded x0.5": lambda x, r, fov: _per_channel(x, lambda c: halve_vessel_contrast(c, 0.5)),
    "vessels removed": lambda x, r, fov: _per_channel(x, lambda c: halve_vessel_contrast(c, 0.0)),
}

# Which artefacts must score STRICTLY worse than the copy, per kind of measure (the others must
# not score better, and may tie).
CUT_OR_JOIN = ("blur sigma 1", "blur sigma 2", "noise SD 0.03", "vessels removed")
STRICT = {
    # Counts (components, holes, branch and end points, segments) change only where vessels are cut
    # or joined; a halo, a contrast or gamma change and faded vessels move borders, which may leave
    # every count as it was.
    "count": CUT_OR_JOIN,
    # The border's width: its own business is the 10-90 % rise; a uniform contrast change, a gamma,
    # fading and noise (it averages out of the mean profile) may leave it (border_contrast_error's).
    "border_width_error": ("unsharp mask", "bright ring 2-3 px outside the vessels", "blur sigma 1", "blur sigma 2",
                           "vessels removed"),
    # The vessel-to-background contrast: every artefact here changes it.
    "border_contrast_error": tuple(ARTEFACTS),
    # Overlap, centre lines and the continuous vessel features: any change of the vessel map moves them.
    "map": tuple(ARTEFACTS),
}
COUNTS = ("betti0_error", "betti1_error", f"betti0_patch{PATCH}_error", f"betti1_patch{PATCH}_error",
          *(f"abs_delta_{f}" for f in ("components", "holes", "branch_points", "end_points", "segments")))
# A feature's least value: what a map with none of what it measures reads (arc / chord >= 1).
FEATURE_FLOOR = {f: (1.0 if f == "distance_tortuosity" else 0.0) for f in FEATURES}


def strict_for(measure: str, definitions: str) -> tuple[str, ...]:
    # AutoMorph's fractal dimension is a slope over counts of boxes of side >= 4 that are neither
    # empty nor full: a change of a few border pixels (contrast x2 moves 13 here) may leave them all.
    if measure in COUNTS or (definitions == "automorph" and measure == "abs_delta_fractal_dimension"):
        return STRICT["count"]
    return STRICT.get(measure, STRICT["map"])


def better(measure: str, a: float, b: float) -> bool:
    """Whether score `a` is strictly better than `b` on `measure`."""
    return a > b if lookup(measure).higher_is_better else a < b


@pytest.fixture(scope="module", params=DEFINITIONS)
def scored(request) -> dict:
    """Per vessel-feature definition set (ours, AutoMorph's: evaluate's --morphology):
    {"rows": {image name: {measure: value as the report reads it}}, "maps": {name: vessel map},
    "ref": the original's vessel map R, "fov": the FOV, "features": the feature function, "definitions"}."""
    image, fov = fundus_with_vessels()
    seg = load_segmenter("ridge")
    images, fovs = image[None], fov[None]
    levels = reference_levels(seg, images, fovs)
    ref = vessel_maps(seg, images, fovs, levels)
    x = to_tensor(images)  # float32, as evaluation's device stage holds the original
    recons = {COPY: x[0].double().numpy()}
    for name, make in ARTEFACTS.items():
        recons[name] = make(x[0].double().numpy(), ref[0], fov)
    recons[VESSEL_FREE] = np.broadcast_to(x[0].double().numpy()[:, fov].mean(1)[:, None, None], x[0].shape)
    rows, maps = [], {}
    for name, recon in recons.items():
        recon = torch.tensor(np.clip(recon, 0, 1) * fov, dtype=torch.float32)[None]  # a model's output: fp32, clamped
        m = vessel_maps(seg, recon, fovs, levels)
        device_out = {"metrics": {}, "maps": m, "green": x[:, 1].double().numpy(), "green_hat": recon[:, 1].double().numpy()}
        row = morphology_stage(device_out, fovs, ref, request.param)["rows"][0]
        rows.append({"trial": "t", "combination": "c", "seed": 0, "image_id": name,
                     **{k: v for k, v in row.items() if not k.startswith("recon.")}})
        maps[name] = m[0]
    long = tidy_per_image(pd.DataFrame(rows))
    table = long.pivot(index="image_id", columns="metric", values="value")
    return {"rows": {name: table.loc[name].to_dict() for name in recons}, "maps": maps, "ref": ref[0], "fov": fov,
            "features": features_for(request.param)[0], "definitions": request.param}


def test_the_voting_vessel_measures_include_the_overlaps_the_borders_and_every_feature_delta():
    assert {"dice", "cldice", "border_width_error", "border_contrast_error"} <= set(MEASURES)
    assert {f"abs_delta_{f}" for f in FEATURES} <= set(MEASURES)
    assert all(lookup(m) is not None and lookup(m).may_vote for m in MEASURES)


def test_the_synthetic_original_has_a_vessel_tree_with_loops(scored):
    f = scored["features"](scored["ref"], scored["fov"])
    assert 0.05 < f["density"] < 0.15 and f["holes"] >= 1 and f["branch_points"] >= 5 and f["segments"] >= 10, f
    assert all(math.isfinite(v) for v in f.values()), f
    assert np.array_equal(scored["maps"][COPY], scored["ref"])  # the copy is cut into the very same map
    # every artefact changes the vessel map: where a measure of the map ties the copy, it missed a change
    assert all(not np.array_equal(scored["maps"][a], scored["ref"]) for a in ARTEFACTS)


@pytest.mark.parametrize("measure", MEASURES)
def test_a_faithful_copy_scores_the_best_value(scored, measure):
    best = 1.0 if lookup(measure).higher_is_better else 0.0
    assert scored["rows"][COPY][measure] == best


@pytest.mark.parametrize("artefact", list(ARTEFACTS))
@pytest.mark.parametrize("measure", MEASURES)
def test_no_artefact_beats_a_faithful_copy(scored, measure, artefact):
    copy, value = scored["rows"][COPY][measure], scored["rows"][artefact][measure]
    assert math.isfinite(value), (f"{measure} is NaN under '{artefact}' (the copy scores {copy}): the image would "
                                  "drop out of the trial's mean, so the artefact escapes the measure")
    assert not better(measure, value, copy), (measure, artefact, value, copy)
    if artefact in strict_for(measure, scored["definitions"]):
        assert better(measure, copy, value), (f"{measure}: '{artefact}' ties the copy ({value})", measure, artefact)


def _vessel_free_value(measure: str, ref: np.ndarray, fov: np.ndarray, features) -> float:
    """What each measure reads against a map without vessels: its floor (dice, cldice 0; the
    border width's whole profile span), or everything the original's map has (its counts, its
    features above their least value) lost; the border contrast error is 1 (no contrast left)."""
    f = features(ref, fov)
    if measure in ("dice", "cldice"):
        return 0.0
    if measure == "border_contrast_error":
        return 1.0
    if measure == "border_width_error":
        return WIDTH_FLOOR
    if measure in ("betti0_error", "betti1_error"):
        return f["components" if measure == "betti0_error" else "holes"]
    if measure.endswith(f"_patch{PATCH}_error"):
        k = 0 if measure.startswith("betti0") else 1
        r = ref & fov
        return float(sum(betti_counts(r[y:y + PATCH, x:x + PATCH])[k]
                         for y in range(0, r.shape[0], PATCH) for x in range(0, r.shape[1], PATCH)))
    feature = measure.removeprefix("abs_delta_")
    return f[feature] - FEATURE_FLOOR[feature]


@pytest.mark.parametrize("measure", MEASURES)
def test_a_vessel_free_image_scores_the_value_of_no_vessel(scored, measure):
    assert not scored["maps"][VESSEL_FREE].any()  # the segmenter finds nothing in one colour
    value, copy = scored["rows"][VESSEL_FREE][measure], scored["rows"][COPY][measure]
    expected = _vessel_free_value(measure, scored["ref"], scored["fov"], scored["features"])
    assert math.isfinite(value), f"{measure} is NaN on a vessel-free image: it drops out of the trial's mean"
    assert value == pytest.approx(expected, rel=1e-9, abs=1e-12), (measure, value, expected)
    assert better(measure, copy, value), (measure, value, copy)
