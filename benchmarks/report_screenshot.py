"""Screenshot a report's index.html in headless Chromium (offline), to look at what a reader sees.

    python benchmarks/report_screenshot.py EXP/report/index.html [--out shot.png] [--width 1400] [--height 3000]

Chromium (Debian package `chromium`) runs with networking background services off and a
throw-away profile; the page itself must need nothing from the network (it is self-contained).
The screenshot is the top --height pixels of the page; pass a larger --height for a long page.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def find_chromium() -> str:
    for c in CHROMIUM_CANDIDATES:
        if Path(c).is_file():
            return c
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        sys.exit("no Chromium found; install it with `apt-get install -y chromium`")
    return found


def screenshot(html: Path, out: Path, width: int = 1400, height: int = 3000, timeout: float = 120.0) -> Path:
    html = Path(html).resolve()
    if not html.is_file():
        sys.exit(f"{html}: not found (write it with `ablate report EXP`)")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ablate-shot-") as profile:
        cmd = [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--screenshot={out}", f"--window-size={width},{height}",
               html.as_uri()]
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)  # rc read below
        if r.returncode != 0 or not out.is_file():
            sys.exit(f"chromium failed (rc {r.returncode}):\n{r.stderr[-3000:]}")
    print(f"{out} ({out.stat().st_size / 1024:.0f} KiB, {width}x{height}, {time.time() - t0:.1f} s)")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("html", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="PNG path (default: beside the HTML, screenshot.png)")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=3000)
    args = ap.parse_args(argv)
    screenshot(args.html, args.out or args.html.with_name("screenshot.png"), args.width, args.height)


if __name__ == "__main__":
    main()
