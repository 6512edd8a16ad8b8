"""Network limits for fetching pretrained files: every connection and every read is bounded.

  connect  $ABLATE_WEIGHTS_CONNECT_TIMEOUT_S, default 10 s: the TCP connect to the host (or
           its proxy), probed once before any request.
  read     $ABLATE_WEIGHTS_READ_TIMEOUT_S, default 60 s: the longest wait for the server's
           answer or for the next bytes of a download. A slow but moving download is never
           cut; a server that accepts the connection and then says nothing fails after this.

Why our own: torch.hub.download_url_to_file opens its URL without a timeout (a silent
server hangs it for ever), and huggingface_hub retries a timed-out metadata request with
a 60 s timeout five times over (minutes), so the Hub endpoint is asked once here first,
without retries, and hf_hub_download's own metadata request gets the same read timeout.
Its GET keeps huggingface_hub's limit ($HF_HUB_DOWNLOAD_TIMEOUT, 10 s per read), which
resumes a download cut mid-way up to five times: a file that stops arriving fails within
about a minute, and its partial file is removed (weights_fetch).
"""

from __future__ import annotations

import http.client
import os
import socket
import sys
import urllib.request
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from ablate.weights import WeightsMissing

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
CONNECT_ENV = "ABLATE_WEIGHTS_CONNECT_TIMEOUT_S"
READ_ENV = "ABLATE_WEIGHTS_READ_TIMEOUT_S"


def _seconds(var: str, default: float) -> float:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise WeightsMissing(f"${var}={raw!r} is not a number of seconds above 0; unset it (default {default:g}) "
                             f"or set e.g. {var}=30")
    return value


def timeouts() -> tuple[float, float]:
    """(connect, read) in seconds, from the environment at call time."""
    return _seconds(CONNECT_ENV, CONNECT_TIMEOUT_S), _seconds(READ_ENV, READ_TIMEOUT_S)


def stalled(url: str, read_s: float) -> str:
    return (f"could not fetch {url}: the server accepted the connection but sent nothing for {read_s:g} s "
            f"(read timeout, ${READ_ENV}); try again later, or use a mirror or another network")


def probe(url: str) -> None:
    """One TCP connect to the URL's host (or to the proxy that would carry it); WeightsMissing if none answers."""
    connect_s, _ = timeouts()
    u = urlsplit(url)
    host, port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
    if host is None:
        raise WeightsMissing(f"could not fetch {url}: it names no host (expected e.g. https://host/path)")
    proxy = urllib.request.getproxies().get(u.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = p.hostname, p.port or 80
    try:
        socket.create_connection((host, port), timeout=connect_s).close()
    except OSError as err:
        raise WeightsMissing(f"could not fetch {url}: {host}:{port} did not answer within {connect_s:g} s "
                             f"(${CONNECT_ENV}) ({err}); no network here?") from err


def answers(url: str) -> None:
    """One HEAD of `url` without retries: any HTTP answer (401 and 404 included) passes; silence for
    the read timeout is WeightsMissing naming the URL."""
    probe(url)
    _, read_s = timeouts()
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=read_s).close()
    except HTTPError:
        return  # the server answered; what the answer means is hf_hub_download's to say
    except TimeoutError as err:
        raise WeightsMissing(stalled(url, read_s)) from err
    except (URLError, OSError, http.client.HTTPException) as err:
        if isinstance(getattr(err, "reason", None), (TimeoutError, socket.timeout)):
            raise WeightsMissing(stalled(url, read_s)) from err
        raise WeightsMissing(f"could not fetch {url}: {getattr(err, 'reason', None) or err}") from err


def download(url: str, dest: Path) -> None:
    """GET `url` into `dest` (the caller's staging name, which it removes on failure), every read
    bounded by the read timeout. WeightsMissing names the URL."""
    probe(url)
    _, read_s = timeouts()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "ablate"}),
                                    timeout=read_s) as resp, open(dest, "wb") as out:
            size = resp.headers.get("Content-Length")
            bar = None
            if sys.stderr.isatty():
                from tqdm import tqdm

                bar = tqdm(total=int(size) if size and size.isdigit() else None, unit="B", unit_scale=True,
                           desc=dest.name.split(".")[0])
            try:
                while block := resp.read(1 << 20):
                    out.write(block)
                    if bar is not None:
                        bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
            if size and size.isdigit() and out.tell() != int(size):
                raise WeightsMissing(f"could not fetch {url}: the server closed the connection after {out.tell()} "
                                     f"of {size} bytes; try again")
    except WeightsMissing:
        raise
    except TimeoutError as err:
        raise WeightsMissing(stalled(url, read_s)) from err
    except (URLError, OSError, http.client.HTTPException) as err:  # HTTPException: a connection cut mid-answer
        if isinstance(getattr(err, "reason", None), (TimeoutError, socket.timeout)):
            raise WeightsMissing(stalled(url, read_s)) from err
        why = err if isinstance(err, HTTPError) else getattr(err, "reason", None) or err
        raise WeightsMissing(f"could not fetch {url}: {why}") from err
