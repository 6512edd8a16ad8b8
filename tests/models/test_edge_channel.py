"""The edge channel (ablate.models.edge_channel): the paper's map as a 4th channel in and out, the controls
that take it apart (the map as a target only; a blurred channel with no vessel prior), its own loss term
(RGB weighs the same in every arm), built from a spec, bad options rejected."""

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
                 " losses: {l1: {weight: 1.0}, edge_map_l1: {weight: 0.333}}}\ncombinations: {edge: {}}\n")
    (spec,) = load_grid(p).trials
    model, edge = build_for_spec(spec)
    x = torch.rand(2, 3, 32, 32)
    x_in, x4 = edge.pair(x)
    assert x_in is x4 and torch.equal(edge.model_input(x), x4)  # the paper's: the map is read and drawn
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
        p.write_text(f"base: {{model: {{preset: tiny, edge_channel: {bad}}}, losses: {{l1: {{}}, edge_map_l1: {{}}}}}}\n"
                     "combinations: {e: {}}\n")
        with pytest.raises(ConfigError, match=msg):
            load_grid(p)


def _grid(tmp_path, model: str, losses: str = "l1: {weight: 1.0}, edge_map_l1: {weight: 0.333}"):
    from ablate.config import load_grid

    p = tmp_path / "g.yaml"
    p.write_text(f"base: {{data: {{size: 32}}, model: {{preset: tiny{model}}}, losses: {{{losses}}}}}\n"
                 "combinations: {a: {}}\n")
    return load_grid(p).trials[0]


def test_target_only_reads_rgb_and_draws_four_channels(tmp_path):
    """The control for 'the test image's ridge map is an input': the encoder sees RGB only."""
    from ablate.models.presets import build_for_spec

    spec = _grid(tmp_path, ", edge_channel: {family: meijering, sigmas: [1.0], role: target_only}")
    model, edge = build_for_spec(spec)
    x = torch.rand(2, 3, 32, 32)
    x_in, target = edge.pair(x)
    assert x_in is x and edge.model_input(x) is x and target.shape == (2, 4, 32, 32)
    assert torch.equal(target[:, :3], x) and model.encoder.conv_in.in_channels == 3
    assert model(x_in)[0].shape == (2, 4, 32, 32)
    with pytest.raises(ValueError, match=r"expected input \(B, 3, H, W\)"):
        model(target)  # a map as input is refused: it can never be read at test time


def test_blurred_channel_carries_no_vessel_ridges():
    """The 'any 4th channel' control: the green channel blurred at 4 px keeps the slow shading
    and loses a thin dark line the Meijering map marks."""
    from ablate.models.edge_channel import parse_edge_channel

    x = torch.full((1, 3, 64, 64), 0.6)
    x[:, :, :, 31:33] = 0.3  # a 2-px dark vessel
    x[:, 1] += torch.linspace(0, 0.2, 64).view(1, 64, 1)  # illumination gradient top to bottom
    blur = parse_edge_channel({"family": "gaussian", "sigma": 4.0}).edge_map(x)[0, 0]
    ridge = parse_edge_channel({"family": "meijering", "sigmas": [1.0]}).edge_map(x)[0, 0]
    row = slice(20, 44)
    # Across the vessel: the ridge map peaks there (near 1); the blurred map barely dips.
    assert ridge[row, 31:33].mean() > 0.5 and ridge[row, 10:20].mean() < 0.1
    blur_dip = blur[row, 10:20].mean() - blur[row, 31:33].mean()
    assert 0 <= blur_dip < 0.25 * (ridge[row, 31:33].mean() - ridge[row, 10:20].mean())
    assert blur[-8:].mean() > blur[:8].mean() + 0.3  # the shading is what it carries
    assert blur.min() >= 0 and abs(float(blur.max()) - 1) < 1e-5


@pytest.mark.bad_input
@pytest.mark.parametrize("raw, msg", [
    ({"family": "gaussian", "sigmas": [1.0]}, "takes only 'sigma'"),
    ({"family": "gaussian", "sigma": -1}, "edge_channel.sigma"),
    ({"family": "meijering", "role": "output"}, "edge_channel.role: must be one of"),
    ({"family": "gausian"}, "gaussian"),
])
def test_edge_channel_options_refused_naming_the_key(raw, msg):
    from ablate.models.edge_channel import parse_edge_channel

    with pytest.raises(ValueError, match=msg):
        parse_edge_channel(raw)


@pytest.mark.bad_input
def test_the_channel_and_its_term_come_together(tmp_path):
    from ablate.config import ConfigError

    with pytest.raises(ConfigError, match=r"a\.losses: model\.edge_channel adds a 4th channel that no term scores"):
        _grid(tmp_path, ", edge_channel: {family: meijering}", "l1: {weight: 1.0}")
    with pytest.raises(ConfigError, match=r"losses\.edge_map_l1: scores the edge map of model\.edge_channel"):
        _grid(tmp_path, "")


def test_rgb_weighs_the_same_with_and_without_the_map_and_the_map_has_its_own_term():
    """Issue 27: the paper's 4-channel L1 mean gave RGB 3/4 of the base arm's weight."""
    from ablate.losses import CompositeLoss, LossSpec
    from ablate.models.edge_channel import parse_edge_channel

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    x_hat = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    target = parse_edge_channel({"family": "meijering", "sigmas": [1.0]}).target(x)
    recon4 = torch.cat([x_hat, torch.zeros_like(x_hat[:, :1])], dim=1)  # a map drawn all black
    base = CompositeLoss.from_specs([LossSpec("l1")])
    edge = CompositeLoss.from_specs([LossSpec("l1"), LossSpec("edge_map_l1", weight=0.333)])
    _, base_logs = base(x, x_hat, {}, 0)
    _, logs = edge(target, recon4, {}, 0)
    assert torch.allclose(logs["loss/l1"], base_logs["loss/l1"])  # RGB term unchanged by the 4th channel
    assert torch.allclose(logs["loss/edge_map_l1"], target[:, 3].mean())  # |map - 0|, the map alone
    with pytest.raises(ValueError, match="edge_map_l1.*4th channel.*add model.edge_channel"):
        CompositeLoss.from_specs([LossSpec("edge_map_l1")])(x, x_hat, {}, 0)


def test_train_step_scores_the_target_not_the_input():
    from ablate.losses import CompositeLoss, LossSpec
    from ablate.models.edge_channel import EdgeChannel, EdgeChannelRole
    from ablate.models.presets import build_with_edge
    from ablate.runtime import resolve_precision
    from ablate.train.step import train_step

    torch.manual_seed(0)
    edge = EdgeChannel("meijering", "green", {"sigmas": (1.0,)}, EdgeChannelRole.target_only)
    model = build_with_edge("tiny", 32, None, edge)
    loss_fn = CompositeLoss.from_specs([LossSpec("l1"), LossSpec("edge_map_l1")])
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x_in, target = edge.pair(torch.rand(2, 3, 32, 32))
    x_hat, _, logs = train_step(model, loss_fn, opt, None, resolve_precision("fp32", "cpu"), None, x_in, 0,
                                model.last_layer, target=target)
    assert x_hat.shape == (2, 4, 32, 32)
    assert torch.allclose(logs["loss/edge_map_l1"], (target[:, 3:] - x_hat[:, 3:]).abs().mean(), atol=1e-6)


@pytest.mark.parametrize("role", ["input_and_target", "target_only"])
def test_evaluation_reads_the_test_images_map_only_in_the_papers_arm(tmp_path, role, monkeypatch):
    """reconstruct() feeds RGB alone to a target-only model, RGB + the test image's own map to the
    paper's; the rebuilt model refuses any other input, so feeding the wrong one cannot pass."""
    from types import SimpleNamespace

    from ablate.evaluate.reconstruct import reconstruct
    from ablate.models.checkpoint import write_checkpoint
    from ablate.models.edge_channel import EdgeChannel, parse_edge_channel
    from ablate.models.presets import build_with_edge

    raw = {"family": "meijering", "sigmas": [1.0], "role": role}
    edge = parse_edge_channel(raw)
    model = build_with_edge("tiny", 32, {}, edge)
    spec = SimpleNamespace(model=SimpleNamespace(preset="tiny", overrides={}, edge_channel=raw),
                           data=SimpleNamespace(size=32))
    write_checkpoint(tmp_path, model_state=model.state_dict(), optimizer_state={}, step=1, spec=spec)
    maps_made = []
    original = EdgeChannel.edge_map
    monkeypatch.setattr(EdgeChannel, "edge_map", lambda self, x: maps_made.append(1) or original(self, x))
    out = reconstruct(str(tmp_path), torch.rand(3, 3, 32, 32), batch_size=2)
    assert out.shape == (3, 3, 32, 32)
    assert bool(maps_made) == (role == "input_and_target")
