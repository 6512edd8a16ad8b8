"""The `lpips` loss term (ablate.losses.perceptual): equal to the lpips package with the same weights, its properties, missing weights, a random trunk tagged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ablate.backbones.vgg import SLICES, VGG16_FILE
from ablate.losses import LOSSES, CompositeLoss
from ablate.weights import WeightsMissing
from tests.weights_servers import refused_url

pytestmark = pytest.mark.usefixtures("one_thread", "own_ablate_cache")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lpips_term(vgg_file):
    return LOSSES.build("lpips", weights=str(vgg_file[0]))


@pytest.fixture(scope="module")
def drive_photos64(drive_dir):
    """Two DRIVE photographs at 64x64, in [0, 1] (drive_dir, from conftest, fails if DRIVE is absent)."""
    files = sorted((drive_dir / "images").glob("*.tif"))[:2]
    assert len(files) == 2, f"expected DRIVE .tif images under {drive_dir / 'images'}"
    ims = [np.asarray(Image.open(f).convert("RGB").resize((64, 64), Image.BILINEAR)) for f in files]
    return torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).float() / 255


def degrade(x, seed=0):
    """A plausible reconstruction: blurred, noisy, slightly out of [0, 1] (decoders are linear)."""
    g = torch.Generator().manual_seed(seed)
    blurred = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return blurred + 0.05 * torch.randn(x.shape, generator=g)


def _term(name, module):
    from ablate.losses.composite import Term

    return Term(name, module, 1.0, 0, False)


# ----------------------------------------------------------------------------- LPIPS vs the lpips package


def test_lpips_equals_the_lpips_package_with_the_same_weights(vgg_file, lpips_term, drive_photos64):
    import lpips as lpips_pkg

    _path, saved = vgg_file
    # pretrained=True loads the package's own v0.1 linear heads; pnet_rand=True keeps it
    # from downloading VGG16, whose trunk we then overwrite with the same stand-in file.
    ref = lpips_pkg.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()
    mapped = {}
    for s, (a, b) in enumerate(SLICES):
        for i in range(a, b):
            for kind in ("weight", "bias"):
                if f"features.{i}.{kind}" in saved:
                    mapped[f"slice{s + 1}.{i}.{kind}"] = saved[f"features.{i}.{kind}"]
    ref.net.load_state_dict(mapped, strict=True)

    # One batch of four pairs: two reconstructions-like, two different photographs.
    a = torch.cat([drive_photos64, drive_photos64])
    b = torch.cat([degrade(drive_photos64), drive_photos64.flip(0)])
    ours = lpips_term.lpips_distance(a, b)
    with torch.no_grad():
        theirs = ref(a, b, normalize=True).flatten()  # normalize=True: the package maps [0,1] -> [-1,1]
    assert ours.shape == (4,)
    assert (ours - theirs).abs().max().item() < 1e-5, (ours, theirs)
    # The comparison is not between zeros or near-equal values.
    assert ours.min() > 1e-3 and ours.max() - ours.min() > 1e-3


# ----------------------------------------------------------------------------- LPIPS term properties


def test_lpips_term_properties(lpips_term, drive_photos64):
    x = drive_photos64[:1]  # one image: VGG16 on a shared CPU is the slow part of this file
    assert lpips_term.tag == "lpips" and lpips_term.rgb_only
    x_hat = degrade(x).requires_grad_(True)
    v = lpips_term(x, x_hat)
    assert v.dim() == 0 and v.item() > 0
    v.backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in lpips_term.parameters())
    with torch.no_grad():
        assert lpips_term(x, x.clone()).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="shape"):
        lpips_term(x, x[:, :, :32])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lpips_term(x * 255, x)
    lpips_term.train()
    assert not any(m.training for m in lpips_term.vgg.modules())


@pytest.mark.bad_input
def test_lpips_missing_weights_from_factory_and_preflight(tmp_path, monkeypatch):
    monkeypatch.delenv("ABLATE_VGG16_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # Since #15 building the term fetches a missing file; here the source is a local port that refuses.
    nowhere = refused_url() + "/" + VGG16_FILE
    monkeypatch.setenv("ABLATE_VGG16_URL", nowhere)
    entry = LOSSES.get("lpips")
    for call in (lambda: LOSSES.build("lpips"), lambda: entry.preflight(), lambda: entry.preflight(pretrained=True)):
        with pytest.raises(WeightsMissing, match=VGG16_FILE) as e:
            call()
        assert "ablate weights fetch vgg16" in str(e.value)
    with pytest.raises(WeightsMissing, match="Fetching it failed") as e:
        LOSSES.build("lpips")  # the factory tried the (refusing) source; preflights never fetch
    assert nowhere in str(e.value)
    entry.preflight(pretrained=False)  # a random trunk needs no VGG file (the heads ship with lpips)
    with pytest.raises(ValueError, match="pretrained=False"):
        entry.preflight(pretrained=False, weights="x.pth")


def test_lpips_preflight_accepts_a_present_file(vgg_file):
    LOSSES.get("lpips").preflight(weights=str(vgg_file[0]))  # must not raise


def test_lpips_random_trunk_is_tagged_and_differs(lpips_term, drive_photos64):
    rand = LOSSES.build("lpips", pretrained=False)
    assert rand.tag == "lpips[random-vgg]" and not rand.vgg.pretrained
    # Both use the published heads; only the trunk differs.
    assert torch.equal(rand.head3, lpips_term.head3)
    x = drive_photos64[:1]
    with torch.no_grad():
        _, logs = CompositeLoss([_term("lpips", rand)])(x, degrade(x), {})
        assert "loss/lpips[random-vgg]" in logs and "loss/lpips" not in logs
        assert not torch.allclose(logs["loss/lpips[random-vgg]"], lpips_term(x, degrade(x)))
