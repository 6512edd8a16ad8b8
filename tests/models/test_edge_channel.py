"""The edge channel (ablate.models.edge_channel): four channels in and out, built from a spec, bad options rejected."""

from __future__ import annotations

import pytest
import torch

from ablate.models import build_model


def test_edge_channel_models_have_four_channels_in_and_out():
    model = build_model("tiny", 32, in_channels=4)
    y, _ = model(torch.rand(2, 4, 32, 32))
    assert y.shape == (2, 4, 32, 32)
    with pytest.raises(ValueError, match=r"expected input \(B, 4, H, W\)"):
        model(torch.rand(2, 3, 32, 32))


def test_edge_channel_spec_builds_a_four_channel_model(tmp_path):
    from ablate.config import load_grid
    from ablate.models.presets import build_for_spec

    p = tmp_path / "g.yaml"
    p.write_text("base: {data: {size: 32}, model: {preset: tiny, edge_channel: {family: meijering, sigmas: [1.0]}},"
                 " losses: {l1: {weight: 1.0}}}\ncombinations: {edge: {}}\n")
    (spec,) = load_grid(p).trials
    model, edge = build_for_spec(spec)
    x = torch.rand(2, 3, 32, 32)
    x4 = edge(x)
    assert x4.shape == (2, 4, 32, 32) and torch.equal(x4[:, :3], x)
    assert x4[:, 3].min() >= 0 and x4[:, 3].amax(dim=(1, 2)).allclose(torch.ones(2), atol=1e-4)
    assert model(x4)[0].shape == (2, 4, 32, 32)
    assert spec.flat()["model.edge_channel.family"] == "meijering"


@pytest.mark.bad_input
def test_edge_channel_rejects_bad_options(tmp_path):
    from ablate.config import ConfigError, load_grid

    for bad, msg in (("{channel: rgb}", "one extra channel"), ("{family: sobell}", "family"),
                     ("{sigmaz: 1}", "sigmaz")):
        p = tmp_path / "g.yaml"
        p.write_text(f"base: {{model: {{preset: tiny, edge_channel: {bad}}}, losses: {{l1: {{}}}}}}\ncombinations: {{e: {{}}}}\n")
        with pytest.raises(ConfigError, match=msg):
            load_grid(p)
