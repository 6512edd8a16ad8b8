"""The vessel maps behind the Synthesis section's morphology numbers, drawn so a reader can look
at them: for the first seed of each arm, 8 samples and the U-Net's map of each (evaluation's
own path: the FOV by threshold, `vessel_maps` with the experiment's segmenter), and 8 real DRIVE
test images at the samples' size with their maps.

    .venv/bin/python studies/synthesis-drive/vessel_maps_figure.py runs/synthesis-drive/exp \\
        --data runs/q2-drive/drive128 --unet runs/q2-drive/vessel_unet-drive128.pth \\
        --out studies/synthesis-drive/figures/vessel_maps.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

N = 8


def maps_of(seg, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vessel maps, FOV masks) as evaluation draws them for samples."""
    from ablate.data.preprocess import threshold_fov
    from ablate.evaluate.reconstruct import to_tensor, vessel_maps

    fov = np.stack([threshold_fov(im) for im in images])
    return vessel_maps(seg, to_tensor(images), fov), fov


def overlay(image: np.ndarray, vessels: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """The image with its map in cyan and the FOV's edge in yellow (one pixel)."""
    from scipy import ndimage as ndi

    out = image.copy()
    out[vessels] = (0, 255, 255)
    out[fov & ~ndi.binary_erosion(fov)] = (255, 255, 0)
    return out


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from ablate.data.sample_store import read_samples
    from ablate.evaluate.splits import load_test_split
    from ablate.segmenter.unet_file import load_segmenter

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("exp", type=Path)
    ap.add_argument("--data", required=True)
    ap.add_argument("--unet", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    seg = load_segmenter(args.unet)
    results = pd.read_parquet(args.exp / "results.parquet").sort_values(["combination", "seed"])
    rows = []
    for combination, trials in results.groupby("combination", sort=False):
        trial = trials.iloc[0]["trial"]
        images = read_samples(args.exp / "samples" / trial).images[:N]
        rows.append((f"{combination} seed {int(trials.iloc[0]['seed'])}: samples", images, *maps_of(seg, images)))
    size = rows[0][1].shape[1]
    real = load_test_split(args.data, size)["images"][:N]
    rows.append((f"DRIVE test at {size} px", real, *maps_of(seg, real)))
    fig, axes = plt.subplots(2 * len(rows), N, figsize=(1.6 * N, 1.85 * 2 * len(rows)))
    for r, (title, images, maps, fov) in enumerate(rows):
        for k in range(N):
            axes[2 * r, k].imshow(images[k], interpolation="nearest")
            axes[2 * r + 1, k].imshow(overlay(images[k], maps[k], fov[k]), interpolation="nearest")
        axes[2 * r, 0].set_title(title, loc="left", fontsize=10)
        density = maps.sum() / max(int(fov.sum()), 1)
        axes[2 * r + 1, 0].set_title(f"{seg.name}: vessels cyan, FOV edge yellow (density {density:.3f})",
                                     loc="left", fontsize=9)
    for a in axes.flat:
        a.set_xticks([])
        a.set_yticks([])
    fig.subplots_adjust(left=0.01, right=0.99, top=0.97, bottom=0.01, wspace=0.04, hspace=0.22)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
