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
