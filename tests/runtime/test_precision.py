"""train.precision on the CPU: bf16 autocast trains the tiny preset about as well as fp32,
every loss term returns a finite fp32 scalar under autocast, and the choices that a
device cannot run are refused (not quietly run in another precision)."""

from __future__ import annotations

import pytest
import torch

from ablate.config import trial_from_dict
from ablate.losses import CompositeLoss, LossSpec
from ablate.models import build_model
from ablate.runtime import PrecisionError, resolve_precision
from ablate.specs import ConfigError, TrainSpec
from ablate.train.step import train_step
from tests.helpers.loss_terms import CHANNELS, SIZE, TERM_OPTIONS

STEPS = 40
# bf16 keeps 8 mantissa bits (~3 significant digits); after 40 Adam steps the two runs
# may drift apart a little. The reconstruction loss must agree within 10 % (relative).
REL_TOL = 0.10


def _train(precision: str, steps: int = STEPS, seed: int = 0) -> list[float]:
    torch.manual_seed(seed)
    model = build_model("tiny", 32).to(memory_format=torch.channels_last)
    loss_fn = CompositeLoss.from_specs([LossSpec(name="l1"), LossSpec(name="codebook")])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.5, 0.9))
    p = resolve_precision(precision, "cpu")
    g = torch.Generator().manual_seed(1)
    # A fixed batch of smooth images (what the autoencoder can learn in a few dozen steps).
    x = torch.nn.functional.interpolate(torch.rand(8, 3, 8, 8, generator=g), size=32, mode="bilinear")
    x = x.contiguous(memory_format=torch.channels_last)
    rec = []
    for step in range(steps):
        _, _, logs = train_step(model, loss_fn, opt, None, p, p.grad_scaler(), x, step, model.last_layer)
        rec.append(float(logs["loss/l1"]))
    return rec


def test_bf16_autocast_trains_tiny_and_matches_fp32():
    bf16, fp32 = _train("bf16"), _train("fp32")
    first, last = sum(bf16[:3]) / 3, sum(bf16[-3:]) / 3
    assert last < 0.7 * first, f"bf16 training did not lower the L1 loss: {first:.4f} -> {last:.4f}"
    ref = sum(fp32[-3:]) / 3
    assert abs(last - ref) <= REL_TOL * ref, f"bf16 L1 after {STEPS} steps {last:.4f} vs fp32 {ref:.4f}"


def test_autocast_really_ran_in_bf16():
    """The conv of the encoder computes in bf16 under the trial's autocast (the test above
    would pass trivially if autocast were a no-op)."""
    model = build_model("tiny", 32)
    seen = []
    model.encoder.conv_in.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with resolve_precision("bf16", "cpu").autocast():
        _, aux = model(torch.rand(2, 3, 32, 32))
    assert seen == [torch.bfloat16]
    assert aux["codebook"].dtype == torch.float32  # the quantiser stays fp32


@pytest.mark.parametrize("name", sorted(TERM_OPTIONS))
def test_every_term_is_a_finite_fp32_scalar_under_autocast(name):
    size = SIZE.get(name, 32)
    spec = LossSpec(name=name, **({"adaptive": True} if name == "adversarial" else {}), options=TERM_OPTIONS[name])
    specs = [spec] if name in ("l1", "codebook") else [LossSpec(name="l1"), spec]
    if name != "codebook":
        specs.append(LossSpec(name="codebook"))
    channels = CHANNELS.get(name, 3)  # edge_map_l1 scores a 4th channel
    model = build_model("tiny", size, in_channels=channels)
    loss_fn = CompositeLoss.from_specs(specs)
    x = torch.rand(2, channels, size, size)
    with resolve_precision("bf16", "cpu").autocast():
        x_hat, aux = model(x)
        total, logs = loss_fn(x, x_hat, aux, 0, model.last_layer)
        d_loss, _ = loss_fn.discriminator_loss(x, x_hat, 0)
    for key, v in {**logs, "total": total, **({"disc": d_loss} if d_loss is not None else {})}.items():
        assert v.dim() == 0 and v.dtype == torch.float32 and torch.isfinite(v), (key, v)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    if name == "adversarial":
        assert d_loss is not None and torch.isfinite(logs["adaptive/adversarial"])


@pytest.mark.bad_input
def test_auto_is_fp32_on_the_cpu_and_fp16_is_refused_there():
    assert resolve_precision("auto", "cpu").name == "fp32"
    assert resolve_precision("auto", "cpu").grad_scaler() is None
    with pytest.raises(PrecisionError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    bf16 = resolve_precision("bf16", "cpu")
    assert bf16.name == "bf16" and "bf16 autocast on the CPU, as asked" in bf16.note  # said, not silent


def test_precision_is_checked_in_the_search_space():
    base = {"losses": {"l1": {}}, "model": {"preset": "tiny"}}
    assert trial_from_dict("c", 0, base, "f.yaml").train.precision == TrainSpec().precision == "auto"
    with pytest.raises(ConfigError, match=r"f.yaml.train.precision: must be one of auto, bf16, fp16, fp32"):
        trial_from_dict("c", 0, {**base, "train": {"precision": "int8"}}, "f.yaml")


def test_launch_precision_overrides_every_trial():
    from ablate.config import resolve_grid

    full, _ = resolve_grid("losses", precision="bf16")
    assert {s.train.precision for s in full.trials} == {"bf16"}
    with pytest.raises(ConfigError, match="train.precision"):
        resolve_grid("losses", precision="half")


def test_validation_runs_under_the_trials_autocast():
    """The loop's `validate` with the bf16 autocast: fp32 scalars, and PSNR within 0.5 dB of fp32's."""
    from ablate.train.loop import validate

    class Feed:
        def epoch(self, _):
            g = torch.Generator().manual_seed(2)
            for _ in range(2):
                yield torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=g), None

    torch.manual_seed(0)
    model = build_model("tiny", 32)
    loss_fn = CompositeLoss.from_specs([LossSpec(name="l1"), LossSpec(name="codebook")])
    bf16 = validate(model, loss_fn, Feed(), 0, None, resolve_precision("bf16", "cpu").autocast)
    fp32 = validate(model, loss_fn, Feed(), 0, None)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in bf16.values())
    assert set(bf16) == set(fp32)
    assert abs(float(bf16["val/psnr"]) - float(fp32["val/psnr"])) < 0.5


def test_evaluation_reconstructs_under_the_same_rule(tmp_path):
    """evaluate's `reconstruct`: auto is fp32 on the CPU (unchanged results there); bf16 gives
    fp32 images within 0.01 of fp32's, on average."""
    from ablate.evaluate.reconstruct import reconstruct
    from ablate.models.checkpoint import write_checkpoint
    from ablate.models.presets import build_for_spec

    spec = trial_from_dict("c", 0, {"losses": {"l1": {}}, "model": {"preset": "tiny"}, "data": {"size": 32}}, "t")
    torch.manual_seed(0)
    model, _ = build_for_spec(spec)
    write_checkpoint(tmp_path, model_state=model.state_dict(), optimizer_state={}, step=1, spec=spec)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    auto = reconstruct(tmp_path, x, "cpu", batch_size=2)
    fp32 = reconstruct(tmp_path, x, "cpu", batch_size=2, precision="fp32")
    bf16 = reconstruct(tmp_path, x, "cpu", batch_size=2, precision="bf16")
    assert torch.equal(auto, fp32)
    # Mean, not max: a bf16 encoder can move a latent across a codebook boundary (near ties
    # in an untrained codebook), which changes that latent's patch.
    assert bf16.dtype == torch.float32 and (bf16 - fp32).abs().mean() < 0.01, (bf16 - fp32).abs().mean()


def test_fp16_machinery_runs_through_cpu_autocast():
    """The fp16 path (GradScaler on both optimisers, the adaptive weight from scaled gradients,
    the discriminator step) exercised with torch's CPU fp16 autocast. A trial cannot ask for
    this (fp16 is refused on the CPU); it is here so that code runs somewhere without a GPU."""
    from ablate.runtime import Precision

    torch.manual_seed(0)
    model = build_model("tiny", 32)
    loss_fn = CompositeLoss.from_specs([LossSpec(name="l1"), LossSpec(name="codebook"),
                                        LossSpec(name="adversarial", adaptive=True, options={"filters": 8})])
    p = Precision("fp16", "cpu")
    scaler = p.grad_scaler()
    loss_fn.grad_scale = scaler.scale
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    d_opt = torch.optim.Adam(loss_fn.adversaries()[0].module.parameters())
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    before = [t.detach().clone() for t in model.parameters()]
    for step in range(4):
        _, _, logs = train_step(model, loss_fn, opt, d_opt, p, scaler, x, step, model.last_layer)
        for k in ("loss/total", "adaptive/adversarial", "disc/loss"):
            assert logs[k].dtype == torch.float32 and torch.isfinite(logs[k]), (step, k, logs[k])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # some steps were taken
