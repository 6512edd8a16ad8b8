"""How far the resized vessel reference moves a segmenter's score (issue 31): the binary
reference (area fraction >= 0.5) against the soft one (the area fraction), at controlled
downscales with a known full-resolution truth.

Each photograph of DRIVE's test split (20) and STARE (16) and its manual mask are upsampled
by a factor k (photograph: Lanczos; masks: nearest, so the upsampled mask is the truth at
full resolution), chosen per image so that `ablate prepare` then shrinks its FOV square by
exactly D (k = D * size / side, side the FOV square of the original); `native` is k = 1.
Prepared (into --work, a temporary folder under /tmp by default, removed afterwards) at
`size` px, the segmenters are scored inside the FOV, pooled over the images:

- Dice against the binary reference (`vessel`), what `ablate segmenter evaluate` always said;
- soft Dice against the soft reference (`vessel_soft`);
- Dice at full resolution: the prediction's pixels upsampled (nearest) onto the truth's
  grid, against the upsampled mask inside the FOV there: the score the references stand in for;
- clDice against each (the soft one on the skeleton of its support, soft > 0);
- and, from manifest.json, the mean area and skeleton length the binary reference lost.

Beside the U-Net (trained at 128 px on DRIVE, read only) and the ridge fallback, the binary
reference itself is scored as a prediction: its soft Dice is the ceiling for a prediction made
of whole output pixels.

    nice -n 10 .venv/bin/python benchmarks/reference_resizing.py
    nice -n 10 .venv/bin/python benchmarks/reference_resizing.py --configs 128:native,128:8 --limit 4

The U-Net file is read only. What a downscale D means here: the FOV square of the upsampled
photograph over the output size; `D of the annotation` is the original's FOV square over the
output size (D / k). At one output size the prepared photographs and references are nearly the
same whatever k (upsampling adds pixels, not thinner vessels): what decides the loss is the
annotated vessel width in output pixels, i.e. D of the annotation; the 64 and 256 px rows vary it.
The U-Net is scored at every size, but was trained at 128 px: at 64 and 256 px it is off its scale.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
UNET = Path("/work/main/runs/q2-drive/vessel_unet-drive128.pth")
CONFIGS = "64:native,128:native,128:6,128:8,256:4,256:8"
BINARY_ITSELF = "(the binary reference itself)"


@dataclass(frozen=True)
class Photo:
    name: str  # the dataset's stem
    image: Path
    fov: Path | None  # DRIVE's FOV masks; STARE has none (threshold FOV, as prepare finds it)
    vessel: Path


def photographs(data: str, limit: int | None) -> list[Photo]:
    """DRIVE's test split or STARE's 16 labelled photographs, as the shared copies lay them out."""
    root = SHARED / data
    stems = [line.split(",")[0] for line in (root / "split.csv").read_text().splitlines()[1:]
             if line.strip().endswith(",test")]
    if data == "drive":
        out = [Photo(s, root / "images" / f"{s}.tif", root / "fov" / f"{s}.gif", root / "vessels" / f"{s}.gif")
               for s in stems]
    else:
        out = [Photo(s, root / "images" / f"{s}.png", None, root / "vessels" / f"{s}.png") for s in stems]
    return out[:limit] if limit else out


def _fov(rgb: np.ndarray, fov: np.ndarray | None) -> np.ndarray:
    from ablate.data.preprocess import threshold_fov

    return fov if fov is not None else threshold_fov(rgb)


def _square(mask: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """`mask` cropped to the FOV's bounding box and zero-padded to a centred square, as
    ablate.data.preprocess crops the photograph and its masks."""
    rows, cols = np.flatnonzero(fov.any(axis=1)), np.flatnonzero(fov.any(axis=0))
    crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    side = max(h, w)
    out = np.zeros((side, side), dtype=bool)
    out[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = crop
    return out


def _side(fov: np.ndarray) -> int:
    rows, cols = np.flatnonzero(fov.any(axis=1)), np.flatnonzero(fov.any(axis=0))
    return int(max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))


def upsampled(photos: list[Photo], size: int, downscale: float | None, folder: Path):
    """Write each photograph and its masks upsampled for `downscale` (None: the originals as they
    are) and an index.csv listing them; returns (index, {source name: (truth square, FOV square)}
    packed as bits, [k], [D])."""
    folder.mkdir(parents=True)
    lines, truth, ks, ds = ["path,split,fov,vessel"], {}, [], []
    for p in photos:
        rgb = np.asarray(Image.open(p.image).convert("RGB"))
        vessel = np.asarray(Image.open(p.vessel).convert("L")) > 127
        fov = None if p.fov is None else np.asarray(Image.open(p.fov).convert("L")) > 127
        side = _side(_fov(rgb, fov))
        if downscale is None:
            k, paths = 1.0, (p.image, p.fov, p.vessel)
        else:
            k = downscale * size / side
            wh = (round(k * rgb.shape[1]), round(k * rgb.shape[0]))
            rgb = np.asarray(Image.fromarray(rgb).resize(wh, Image.Resampling.LANCZOS))
            vessel = np.asarray(Image.fromarray(vessel).resize(wh, Image.Resampling.NEAREST))
            fov = None if fov is None else np.asarray(Image.fromarray(fov).resize(wh, Image.Resampling.NEAREST))
            paths = (folder / f"{p.name}.png", None if fov is None else folder / f"{p.name}_fov.png",
                     folder / f"{p.name}_vessel.png")
            Image.fromarray(rgb).save(paths[0], compress_level=1)
            if fov is not None:
                Image.fromarray(fov).save(paths[1], compress_level=1)
            Image.fromarray(vessel).save(paths[2], compress_level=1)
        used = _fov(rgb, fov)
        lines.append(f"{paths[0]},test,{paths[1] or ''},{paths[2]}")
        truth[str(paths[0])] = (np.packbits(_square(vessel, used)), np.packbits(_square(used, used)), _side(used))
        ks.append(k)
        ds.append(_side(used) / size)
    index = folder / "index.csv"
    index.write_text("\n".join(lines) + "\n")
    return index, truth, ks, ds


def full_resolution_dice(pred: np.ndarray, sources: list[str], truth: dict) -> float:
    """Pooled Dice of the (N, S, S) binary predictions, each pixel upsampled (nearest) onto its
    image's full-resolution FOV square, against the full-resolution truth inside the FOV there."""
    inter = p_sum = t_sum = 0
    for i, src in enumerate(sources):
        packed_t, packed_f, side = truth[src]
        t = np.unpackbits(packed_t, count=side * side).reshape(side, side).astype(bool)
        f = np.unpackbits(packed_f, count=side * side).reshape(side, side).astype(bool)
        p = np.asarray(Image.fromarray(pred[i]).resize((side, side), Image.Resampling.NEAREST)) & f
        t &= f
        inter += int((p & t).sum())
        p_sum += int(p.sum())
        t_sum += int(t.sum())
    return 2 * inter / (p_sum + t_sum)


def score(data_dir: Path, base: Path, segs, truth: dict) -> list[dict]:
    """Per segmenter: the scores of `evaluate_split` (both references) and the full-resolution Dice."""
    from ablate.segmenter.evaluation import predict_arrays, soft_reference
    from ablate.segmenter.labelled import load_labelled
    from ablate.segmenter.scores import evaluate_arrays, reference_scores

    lab = load_labelled(data_dir, "test")
    soft, lost = soft_reference(data_dir, "test", lab.ids)
    out = []
    # The binary reference itself as a prediction: Dice 1 by construction; its soft Dice is the most
    # a prediction made of whole output pixels can reach against the soft reference here.
    oracle = [(BINARY_ITSELF, lab.vessel.astype(np.float32), 0.5)]
    for name, prob, threshold in oracle + [(seg.name, predict_arrays(seg, lab.images, lab.fov), seg.threshold)
                                           for seg in segs]:
        pred = (prob > threshold) & lab.fov
        m = evaluate_arrays(prob, lab.vessel, lab.fov, threshold)
        m.update(reference_scores(pred, lab.vessel, soft, lab.fov), **lost)
        sources = [str(Path(s) if Path(s).is_absolute() else base / s) for s in lab.sources]  # as the index named them
        m["full_resolution_dice"] = full_resolution_dice(pred, sources, truth)
        out.append({"segmenter": name, **{k: m[k] for k in ("dice", "soft_dice", "full_resolution_dice",
                                                                 "cldice_binary", "cldice_soft", "n_images")}})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=CONFIGS, help="size:D pairs (D a downscale, or 'native' for k = 1)")
    ap.add_argument("--data", default="drive,stare")
    ap.add_argument("--unet", type=Path, default=UNET, help="U-Net file (read only)")
    ap.add_argument("--limit", type=int, default=None, help="first N photographs of each dataset (a quick look)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new one under /tmp, removed)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)  # a shared 2-core machine
    from ablate.data.shards import load_manifest, prepare
    from ablate.segmenter.unet_file import load_segmenter

    work = args.work or Path(tempfile.mkdtemp(prefix="reference-resizing-", dir="/tmp"))
    os.environ["ABLATE_CACHE"] = str(work / "cache")  # prepare's records too stay in the scratch folder
    segs = [load_segmenter(args.unet), load_segmenter("ridge")]
    rows = []
    t_all = time.perf_counter()
    try:
        for data in args.data.split(","):
            photos = photographs(data, args.limit)
            for cfg in args.configs.split(","):
                size_s, d_s = cfg.split(":")
                size, d = int(size_s), (None if d_s == "native" else float(d_s))
                t0 = time.perf_counter()
                folder = work / f"{data}-{size}-{d_s}"
                if folder.exists():  # removed after scoring below: only ever a folder this run wrote
                    raise SystemExit(f"{folder}: already exists; give --work an empty or new folder")
                index, truth, ks, ds = upsampled(photos, size, d, folder / "src")
                prepare(None, folder / "out", size=size, index=index, cpus=1, in_process_below=10**9)
                loss = load_manifest(folder / "out").vessel_reference
                assert loss is not None
                lt = loss.loss["test"]
                for s in score(folder / "out", index.parent, segs, truth):
                    rows.append({"data": data, "size": size, "k": float(np.mean(ks)), "D": float(np.mean(ds)),
                                 "D_annotation": float(np.mean([d_ / k_ for d_, k_ in zip(ds, ks)])),
                                 "area_lost": lt.area_lost_mean, "length_lost": lt.length_lost_mean, **s})
                shutil.rmtree(folder)  # a few hundred MB at the larger factors: one config at a time
                print(f"{data} {size} px D {np.mean(ds):.2f} (k {np.mean(ks):.2f}): "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{time.perf_counter() - t_all:.0f} s in all; load average {os.getloadavg()[0]:.1f}\n")
    head = ("| data | size | D (k) | D of the annotation | binary lost: area | length | segmenter | Dice (binary ref.) "
            "| soft Dice (soft ref.) | Dice at full resolution | clDice (binary ref.) | clDice (soft ref.) |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        print(f"| {r['data']} ({r['n_images']}) | {r['size']} | {r['D']:.1f} ({r['k']:.2f}) | {r['D_annotation']:.1f} "
              f"| {r['area_lost']:.1%} "
              f"| {r['length_lost']:.1%} | {r['segmenter']} | {r['dice']:.4f} | {r['soft_dice']:.4f} "
              f"| {r['full_resolution_dice']:.4f} | {r['cldice_binary']:.4f} | {r['cldice_soft']:.4f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
