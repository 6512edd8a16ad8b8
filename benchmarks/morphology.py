"""Throughput of the vessel-morphology suite, serially and through Ray tasks.

One "image" = ``vessel_features`` of a reference and a test vessel map plus
their ``agreement`` (one ``agreement`` call computes all three, sharing each
map's skeleton). The maps are DRIVE manual vessel masks (../shared/data/drive)
resized to 256 and 512 px: bilinear on {0, 1} then thresholded at 0.5 for the
reference, and blurred (Gaussian, 1 px at 512) then thresholded at 0.6 for the
test, a thinner, gappier map standing in for a degraded reconstruction; the
FOV masks are resized the same way as the reference. Serial and Ray runs use
the same images in the same process, side by side; Ray gets one task per
image (``ray.init(num_cpus=2)``), its workers warmed up before timing. The
serial CPU time per image is printed too: on a shared machine it moves less
with other load than the wall-clock rates do (the load average is printed).

    .venv/bin/python benchmarks/morphology.py                 # 40 images, 3 repeats
    .venv/bin/python benchmarks/morphology.py --images 20 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from ablate.evaluate.morphology import agreement

DRIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "drive"
SIZES = (256, 512)


def _resize(a: np.ndarray, size: int) -> np.ndarray:
    img = Image.fromarray(a.astype(np.float32))
    return np.asarray(img.resize((size, size), Image.BILINEAR))


def load(size: int, n: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    stems = sorted(p.stem for p in (DRIVE / "vessels").glob("*.gif"))[:n]
    out = []
    for stem in stems:
        v = (np.asarray(Image.open(DRIVE / "vessels" / f"{stem}.gif")) > 0).astype(np.float32)
        f = (np.asarray(Image.open(DRIVE / "fov" / f"{stem}.gif")) > 0).astype(np.float32)
        vr = _resize(v, size)
        ref = vr >= 0.5
        test = ndi.gaussian_filter(vr, size / 512) >= 0.6
        out.append((ref, test, _resize(f, size) >= 0.5))
    return out


def suite(ref: np.ndarray, test: np.ndarray, fov: np.ndarray) -> dict[str, float]:
    return agreement(ref, test, fov)


def time_serial(images) -> tuple[float, float]:
    """(wall, CPU) seconds of this process for the whole list."""
    t0, c0 = time.perf_counter(), time.process_time()
    for ref, test, fov in images:
        suite(ref, test, fov)
    return time.perf_counter() - t0, time.process_time() - c0


def time_ray(ray, task, images) -> float:
    t0 = time.perf_counter()
    ray.get([task.remote(*im) for im in images])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=40, help="DRIVE masks per size (at most 40)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds per mode; the median is reported")
    args = ap.parse_args()
    if not (DRIVE / "vessels").is_dir():
        raise SystemExit(f"DRIVE not found at {DRIVE}")

    import ray

    data = {s: load(s, args.images) for s in SIZES}
    tmp = os.path.join("/tmp", f"ablate-morph-{os.getpid()}")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tmp, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(suite)
        warm = data[SIZES[0]][:4]
        time_ray(ray, task, warm)  # start both workers, import the module there
        for im in warm:
            suite(*im)
        print(f"{args.images} DRIVE manual masks per size; one image = features of 2 maps + agreement; "
              f"median of {args.repeats} rounds; Ray: num_cpus=2, one task per image")
        print(f"load average before timing: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"{'size':>6} {'serial img/s':>13} {'ray img/s':>10} {'ray/serial':>11} {'serial ms/img':>14}"
              f" {'serial CPU ms/img':>18}")
        for size in SIZES:
            images = data[size]
            ser, cpu, par = [], [], []
            for _ in range(args.repeats):  # interleaved so load drift hits both
                wall, c = time_serial(images)
                ser.append(wall)
                cpu.append(c)
                par.append(time_ray(ray, task, images))
            s, p = statistics.median(ser), statistics.median(par)
            n = len(images)
            c = statistics.median(cpu)
            print(f"{size:>6} {n / s:>13.1f} {n / p:>10.1f} {s / p:>11.2f} {1000 * s / n:>14.1f} {1000 * c / n:>18.1f}")
        print(f"load average after timing: {os.getloadavg()[0]:.1f}")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
