"""Edge/ridge filters (ablate.edge_filters) against scikit-image on real DRIVE photographs.
(The `edge` loss term built on them: tests/losses/test_edge.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage import filters, transform

from ablate.edge_filters import FAMILIES, edge_map, gaussian_blur, normalized_edge_map, select_channel, sobel

STEMS = ("01_test", "21_training", "35_training")


SIZE = (256, 248)  # DRIVE is 584 x 565; keep the aspect ratio


FOV_ERODE = 5  # px: keep the strong FOV rim out of the correlation, so vessels and texture decide it


SIGMAS = (1.0, 2.0, 3.0)


# (our options, skimage reference on a 2-D float64 green channel)
REFERENCES = {
    "sobel": ({}, filters.sobel),
    "scharr": ({}, filters.scharr),
    "prewitt": ({}, filters.prewitt),
    # skimage.filters.gaussian defaults to mode='nearest'; ours follows every other filter's 'reflect'.
    "log": ({"sigma": 1.5}, lambda g: filters.laplace(filters.gaussian(g, sigma=1.5, mode="reflect"))),
    "meijering": ({"sigmas": SIGMAS}, lambda g: filters.meijering(g, sigmas=SIGMAS, black_ridges=True)),
    "frangi": ({"sigmas": SIGMAS}, lambda g: filters.frangi(g, sigmas=SIGMAS, black_ridges=True)),
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def drive_images(drive_dir) -> list[tuple[np.ndarray, np.ndarray]]:
    """(RGB float64 image in [0, 1], eroded FOV mask) at SIZE for a few DRIVE photographs."""
    out = []
    for stem in STEMS:
        rgb = np.asarray(Image.open(drive_dir / "images" / f"{stem}.tif"), dtype=np.float64) / 255
        rgb = transform.resize(rgb, SIZE, anti_aliasing=True)
        fov = np.asarray(Image.open(drive_dir / "fov" / f"{stem}.gif")) > 127
        fov = transform.resize(fov, SIZE, order=0, anti_aliasing=False)
        out.append((rgb, ndimage.binary_erosion(fov, iterations=FOV_ERODE)))
    return out


def _batch(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float().contiguous()


def test_every_family_has_a_reference_or_its_own_test():
    assert set(FAMILIES) == set(REFERENCES) | {"canny"}


@pytest.mark.parametrize("family", sorted(REFERENCES))
def test_filter_matches_skimage_on_drive(family, drive_images):
    options, reference = REFERENCES[family]
    rhos = []
    for rgb, fov in drive_images:
        ref = reference(rgb[..., 1])
        ours = edge_map(_batch(rgb), family, "green", **options)[0, 0].double().numpy()
        rho = np.corrcoef(ours[fov], ref[fov])[0, 1]
        rhos.append(rho)
        assert rho >= 0.95, f"{family}: Pearson rho {rho:.4f} inside the FOV"
        # The definitions are the same, so beyond correlation the values agree to float32 precision.
        np.testing.assert_allclose(ours, ref, atol=1e-5 * np.abs(ref).max())
    print(f"{family}: 1 - rho = {', '.join(f'{1 - r:.1e}' for r in rhos)}")


def test_rgb_channel_filters_each_channel(drive_images):
    rgb, _ = drive_images[0]
    maps = edge_map(_batch(rgb), "sobel", "rgb")
    assert maps.shape == (1, 3, *SIZE)
    for c in range(3):
        np.testing.assert_allclose(maps[0, c].double().numpy(), filters.sobel(rgb[..., c]), atol=1e-6)


def test_select_channel():
    x = torch.rand(2, 4, 8, 8)  # a 4th (edge) channel is ignored
    assert torch.equal(select_channel(x), x[:, 1:2])
    assert torch.equal(select_channel(x, "rgb"), x[:, :3])
    lum = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    torch.testing.assert_close(select_channel(x, "luminance")[:, 0], lum)
    with pytest.raises(ValueError, match="channel must be one of"):
        select_channel(x, "red")
    with pytest.raises(ValueError, match=">=3"):
        select_channel(x[:, :1])


@pytest.mark.bad_input
def test_unknown_family_is_rejected():
    with pytest.raises(ValueError, match="edge family must be one of"):
        edge_map(torch.rand(1, 3, 8, 8), "roberts")


def test_soft_canny_peaks_at_a_vertical_step_and_thins_it():
    x = torch.full((1, 3, 32, 32), 0.2)
    x[..., 16:] = 0.8  # edge between columns 15 and 16
    row = edge_map(x, "canny", sigma=1.0)[0, 0, 16]
    assert int(row.argmax()) in (15, 16)
    # Right beside the edge the soft NMS leaves little, where the plain smoothed magnitude is still large.
    plain = sobel(gaussian_blur(x[:, 1:2], 1.0))[0, 0, 16]
    assert plain[14] / plain.max() > 0.3 and plain[17] / plain.max() > 0.3
    assert row[14] / row.max() < 0.05 and row[17] / row.max() < 0.05


def test_soft_canny_thins_a_diagonal_step():
    r, c = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    x = torch.where(c > r, 0.8, 0.2).expand(1, 3, 32, 32).clone()  # edge between diagonals c-r=0 and c-r=1
    resp = edge_map(x, "canny", sigma=1.0)[0, 0]
    inner = (r > 6) & (r < 25) & (c > 6) & (c < 25)  # away from the image border
    diag = c - r
    peak = resp[inner & ((diag == 0) | (diag == 1))].min()
    # Neighbours across the edge (c-r = -1, 2) are suppressed only if NMS compares across, not along, the edge.
    off = resp[inner & ((diag == -1) | (diag == 2))].max()
    assert off / peak < 0.2


def test_soft_canny_is_zero_on_a_flat_image():
    assert edge_map(torch.full((2, 3, 16, 16), 0.4), "canny").abs().max() < 1e-6


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_normalized_edge_map_in_unit_interval(family, drive_images):
    rgb, _ = drive_images[0]
    rgb = transform.resize(rgb, (128, 124), anti_aliasing=True)  # range, not accuracy, is tested here
    x = torch.cat([_batch(rgb), torch.zeros(1, 3, 128, 124)])  # a real photograph and a flat one
    maps = normalized_edge_map(x, family, "rgb")
    assert maps.min() >= 0 and maps.max() <= 1
    assert maps[0].amax(dim=(-2, -1)).min() > 0.99  # each real map reaches ~1
    assert maps[1].abs().max() == 0  # flat image: 0, not 0/0
