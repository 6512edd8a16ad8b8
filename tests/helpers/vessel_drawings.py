"""Vessel maps drawn from curves, and DRIVE photographs prepared in place, for the tests of
vessel measures (evaluate/test_morphology, test_width, test_vessel_border)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree


def draw(curve: np.ndarray, width: float, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre is within width/2 of a densely sampled (row, col) curve.

    Args:
        curve: (k, 2) points (row, col) along the curve.
        width: the vessel's width in pixels.
        shape: the map's (rows, cols).
    """
    tree = cKDTree(curve)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d, _ = tree.query(np.stack([yy.ravel(), xx.ravel()], 1), distance_upper_bound=width)
    return (d < width / 2).reshape(shape)


def arc(radius: float, t0: float, t1: float, centre=(100.0, 128.0)) -> np.ndarray:
    """20000 (row, col) points on a circle arc from angle t0 to t1 (radians), for `draw`.

    Args:
        radius: in pixels.
        t0: the first angle.
        t1: the last angle.
        centre: (row, col) of the circle's centre.
    """
    t = np.linspace(t0, t1, 20000)
    return np.stack([centre[0] + radius * np.sin(t), centre[1] + radius * np.cos(t)], 1)


def bar(width: int, vertical: bool = False, shape=(96, 256)) -> np.ndarray:
    """A straight bar `width` pixels thick across the middle of a map, 20 px clear of its ends.

    Args:
        width: in pixels.
        vertical: transposed (a vertical bar in a map of shape reversed).
        shape: the map's (rows, cols) before any transpose.
    """
    m = np.zeros(shape, bool)
    r0 = shape[0] // 2 - width // 2
    m[r0 : r0 + width, 20 : shape[1] - 20] = True
    return m.T.copy() if vertical else m


def prepared_drive_photograph(drive_dir: Path, stem: str, size: int):
    """A prepared DRIVE photograph: cropped to its FOV, black (plain) outside it.

    Args:
        drive_dir: the DRIVE copy (conftest's `drive_dir`).
        stem: which photograph, e.g. "01_test".
        size: the side it is prepared at.
    """
    from ablate.data.preprocess import preprocess

    d = drive_dir
    return preprocess(d / "images" / f"{stem}.tif", size, fov=d / "fov" / f"{stem}.gif",
                      vessel=d / "vessels" / f"{stem}.gif")


def halve_vessel_contrast(g: np.ndarray, factor: float) -> np.ndarray:
    """The green channel `g` with its dark vessels' depth below the background scaled by `factor`.

    Args:
        g: a green channel (2-D).
        factor: 1 leaves it, 0.5 halves the contrast, 0 removes the vessels.
    """
    bg = ndi.grey_closing(g, size=(9, 9))  # the background with the dark vessels closed over
    return bg - factor * (bg - g)


def _curve(kind: str, *a) -> np.ndarray:
    """4000 (row, col) points: ("arc", centre, radius, t0, t1) or ("wave", start, end, amplitude,
    half-waves): a sine of that amplitude across the straight line from start to end."""
    t = np.linspace(0, 1, 4000)
    if kind == "arc":
        (cy, cx), r, t0, t1 = a
        th = t0 + (t1 - t0) * t
        return np.stack([cy + r * np.sin(th), cx + r * np.cos(th)], 1)
    (y0, x0), (y1, x1), amp, n = a
    normal = np.array([-(x1 - x0), y1 - y0]) / np.hypot(x1 - x0, y1 - y0)
    line = np.stack([y0 + (y1 - y0) * t, x0 + (x1 - x0) * t], 1)
    return line + (amp * np.sin(np.pi * n * t))[:, None] * normal


def fundus_with_vessels(size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic fundus photograph: dark curved vessels 2.5-6 px wide (two arcades from a disc,
    branches, a crossing that closes loops) on a bright vignetted background with a faint texture,
    inside a round FOV, black outside. Returns (uint8 (size, size, 3) RGB, (size, size) bool FOV).

    Args:
        size: the side in pixels; the drawing is laid out for 256 and scaled.
        seed: seeds the texture and the grain.
    """
    s = size / 256
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    c = size / 2 - 0.5
    r2 = ((yy - c) ** 2 + (xx - c) ** 2) / (size * 0.47) ** 2
    fov = r2 < 1
    rng = np.random.default_rng(seed)
    texture = ndi.gaussian_filter(rng.normal(0, 1, (size, size)), 6 * s)
    green = 0.62 - 0.12 * r2 + 0.015 * texture / texture.std()
    disc = np.array([128.0, 80.0])
    vessels = [  # (centre line at 256 px, width px at 256 px)
        (_curve("arc", disc + (0, 80), 80, -np.pi, -0.6), 6), (_curve("arc", disc + (0, 80), 80, np.pi, 0.6), 6),
        (_curve("wave", disc, (130, 220), 10, 3), 4), (_curve("wave", (62, 120), (40, 200), 6, 2), 3),
        (_curve("wave", (192, 120), (215, 195), 6, 2), 3), (_curve("wave", (70, 160), (190, 175), 8, 3), 3),
        (_curve("wave", (100, 100), (30, 140), 5, 2), 2.5), (_curve("wave", (156, 100), (226, 140), 5, 2), 2.5),
    ]
    depth = np.zeros((size, size))
    pixels = np.stack([yy.ravel(), xx.ravel()], 1)
    for line, width in vessels:
        w = width * s
        d = cKDTree(line * s).query(pixels, distance_upper_bound=w + 3)[0].reshape(size, size)
        # an antialiased edge; wider vessels darker, as in a fundus
        depth = np.maximum(depth, np.clip(w / 2 + 0.5 - d, 0, 1) * (0.10 + 0.025 * width))
    green = green - depth + np.random.default_rng(seed + 1).normal(0, 0.004, green.shape)
    rgb = np.stack([green + 0.3, green, 0.35 * green], -1) * fov[..., None]
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8), fov
