"""Does any segmenter draw a ring just inside the FOV rim on blurred images? (issue 27)

Evaluation counts no vessel in the band of `rim_px(size)` pixels inside the FOV edge, for
every segmenter (`evaluate.reconstruct.vessel_maps`): a blurred reconstruction smears the dark
FOV edge inward, and a ridge filter (or a U-Net off its camera) reads it as a vessel ring. This
measures whether the band is wide enough: the vessel density each segmenter finds in the two
bands just inside the excluded rim (r..2r and 2r..3r px from the FOV edge, r = rim_px) and in
the interior (> 3r), on DRIVE's 20 test photographs, sharp and Gaussian-blurred (the study's
arms equal a blur of sigma 2.2-2.7 px at 128 px), beside the manual masks' density in the
same bands. A ring shows as band density far above the manual mask's there.

    .venv/bin/python benchmarks/rim_band.py --size 128 --unet runs/q2-drive/vessel_unet-drive128.pth

Prints a Markdown table (means over the 20 photographs).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

DRIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "drive"
SIGMAS = (0.0, 1.5, 2.5)


def band_densities(vessels: np.ndarray, fov: np.ndarray, rim: int) -> tuple[float, float, float]:
    """Vessel density (vessel pixels / band pixels) in r..2r, 2r..3r and beyond 3r px from the FOV edge."""
    dist = ndi.distance_transform_edt(fov)
    bands = [fov & (dist > rim) & (dist <= 2 * rim), fov & (dist > 2 * rim) & (dist <= 3 * rim), fov & (dist > 3 * rim)]
    return tuple(float((vessels & b).sum() / max(int(b.sum()), 1)) for b in bands)  # type: ignore[return-value]


def main() -> None:
    import torch

    from ablate.data.preprocess import preprocess
    from ablate.evaluate.reconstruct import vessel_maps
    from ablate.segmenter.ridge import RidgeSegmenter, rim_px
    from ablate.segmenter.unet_file import load_segmenter

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--drive", default=str(DRIVE))
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--unet", action="append", default=[], help="a U-Net file (repeat for more)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    segs = [RidgeSegmenter(), *(load_segmenter(u) for u in args.unet)]
    stems = sorted(p.stem for p in (Path(args.drive) / "images").glob("*_test.tif"))
    photos = [preprocess(Path(args.drive) / "images" / f"{s}.tif", args.size, fov=Path(args.drive) / "fov" / f"{s}.gif",
                         vessel=Path(args.drive) / "vessels" / f"{s}.gif") for s in stems]
    rim = rim_px(args.size)
    manual = np.mean([band_densities(p.vessel.astype(bool), p.fov, rim) for p in photos], axis=0)
    print(f"DRIVE test, {len(photos)} photographs at {args.size} px; excluded rim r = {rim} px\n")
    print("| blur sigma px | segmenter | r..2r | 2r..3r | interior | r..2r / interior |")
    print("|---|---|---|---|---|---|")
    print(f"| - | manual mask | {manual[0]:.3f} | {manual[1]:.3f} | {manual[2]:.3f} | {manual[0] / manual[2]:.2f} |")
    for sigma in SIGMAS:
        images = np.stack([p.image for p in photos])
        if sigma > 0:
            # The whole picture, black surround included: the dark edge smears inward, as in a
            # blurred reconstruction (not the camera shift's blur, which keeps the edge clean).
            images = np.stack([(ndi.gaussian_filter(p.image.astype(np.float32), sigma=(sigma, sigma, 0)) + 0.5)
                               .clip(0, 255).astype(np.uint8) * p.fov[..., None] for p in photos])
        fov = np.stack([p.fov for p in photos])
        for seg in segs:
            maps = vessel_maps(seg, images, fov)
            d = np.mean([band_densities(m, f, rim) for m, f in zip(maps, fov, strict=True)], axis=0)
            print(f"| {sigma:g} | {seg.name} | {d[0]:.3f} | {d[1]:.3f} | {d[2]:.3f} | {d[0] / max(d[2], 1e-9):.2f} |")
    print(f"\n{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
