"""TensorBoard output written by rank 0 (Ray Train V2 writes none itself), and the
two halves of TensorBoard on object storage.

torch's SummaryWriter only writes local files. For an experiment on a URI
(s3://…), `TrialWriter` writes into a local temporary folder and uploads its files
to <experiment>/tensorboard/<trial>/ every UPLOAD_EVERY_S seconds (checked when
scalars are logged) and on close, so a grid can be watched while it runs; a
worker killed outright loses at most the last interval. `mirror_logs` is the
reading half: it keeps a local copy of a remote tensorboard/ folder up to date for
`ablate tensorboard s3://…`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from ablate import storage

logger = logging.getLogger(__name__)

UPLOAD_EVERY_S = 30.0
# An event file is uploaded whole each time it changed; past this size the writer
# starts a new file, so a long run re-uploads at most this much per interval.
ROTATE_BYTES = 8 << 20


class TrialWriter:
    """Per-trial scalars and image grids under <experiment>/tensorboard/<trial>/
    (`logdir` is a local folder or a URI)."""

    def __init__(self, logdir: str):
        self.remote = storage.normalize(logdir) if storage.is_uri(logdir) else None
        self.local = tempfile.mkdtemp(prefix="ablate-tb-") if self.remote else logdir
        self.writer = SummaryWriter(self.local, flush_secs=30)
        self._uploaded: dict[str, tuple[int, int]] = {}  # file -> (size, mtime_ns) when last uploaded
        self._finished: set[str] = set()  # files of writers closed by rotation
        self._last_upload = time.monotonic()

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, v in values.items():
            self.writer.add_scalar(tag, v, step)
        if self.remote and time.monotonic() - self._last_upload >= UPLOAD_EVERY_S:
            try:
                self.upload()
            except OSError as e:
                # A store hiccup must not kill training; said in the worker's log, retried
                # next interval. The upload in close() raises instead: that one must land.
                self._last_upload = time.monotonic()
                logger.warning(f"warning: TensorBoard upload to {self.remote} failed ({e}); retrying in "
                               f"{UPLOAD_EVERY_S:g} s")

    def reconstructions(self, x: torch.Tensor, x_hat: torch.Tensor, step: int, n: int = 4) -> None:
        """One image per sample: input | reconstruction side by side (RGB channels)."""
        x_full, x_hat_full = x, x_hat
        x, x_hat = x[:n, :3].detach().float().cpu(), x_hat[:n, :3].detach().float().cpu().clamp(0, 1)
        pairs = torch.cat([x, x_hat], dim=3)  # (n, 3, H, 2W)
        grid = torch.cat(list(pairs), dim=1)  # (3, n*H, 2W)
        self.writer.add_image("images/input|reconstruction", grid, step)
        if x_hat_full.shape[1] == 4:  # the edge channel: input map | reconstructed map
            maps = torch.cat([x_full[:n, 3:].detach().float().cpu(), x_hat_full[:n, 3:].detach().float().cpu().clamp(0, 1)], 3)
            self.writer.add_image("images/edge_input|edge_reconstruction", torch.cat(list(maps), 1), step)

    def upload(self) -> None:
        """Flush, copy every file that changed since the last upload, and start a new
        event file once the open one is past ROTATE_BYTES."""
        self.writer.flush()
        if self._copy_changed() > ROTATE_BYTES:
            self.writer.close()  # its file is complete and uploaded: it never changes again
            self._finished = set(self._uploaded)
            self.writer = SummaryWriter(self.local, flush_secs=30)

    def _copy_changed(self) -> int:
        """Upload changed files; returns the bytes in the open writer's files."""
        assert self.remote is not None  # uploads happen only for a remote logdir (scalars, close)
        current = 0
        for p in sorted(Path(self.local).rglob("*")):
            if not p.is_file():
                continue
            st = p.stat()
            rel = p.relative_to(self.local).as_posix()
            if self._uploaded.get(rel) != (st.st_size, st.st_mtime_ns):
                storage.write_bytes(storage.join(self.remote, rel), p.read_bytes())
                self._uploaded[rel] = (st.st_size, st.st_mtime_ns)
            if rel not in self._finished:
                current += st.st_size
        self._last_upload = time.monotonic()
        return current

    def close(self) -> None:
        """For a URI, a failed last upload raises (the trial is told) and keeps the local
        folder, then the only copy of what did not go up."""
        self.writer.flush()
        self.writer.close()
        if self.remote:
            self._copy_changed()
            shutil.rmtree(self.local, ignore_errors=True)


def mirror_logs(uri: str, local: str | Path) -> int:
    """Bring the local copy of a remote tensorboard/ folder up to date; returns the
    number of files written. Event files only grow, and TensorBoard keeps reading
    an open file from where it stopped, so a file that grew gets just its new tail
    appended (replacing it would hide the new events); one that shrank or is new is
    written whole; one gone from the bucket (an HParams session `ablate report`
    replaced) is removed."""
    local = Path(local)
    remote = storage.list_files(uri)
    changed = 0
    for rel, size in sorted(remote.items()):
        dst = local / rel
        have = dst.stat().st_size if dst.is_file() else -1
        if have == size:
            continue
        if 0 <= have < size:
            tail = storage.read_range(storage.join(uri, rel), have, size - have)
            with open(dst, "ab") as out:
                out.write(tail)
        else:
            storage.download(storage.join(uri, rel), dst)
        changed += 1
    if local.is_dir():
        for p in sorted(local.rglob("*"), reverse=True):
            rel = p.relative_to(local).as_posix()
            if p.is_file() and rel not in remote:
                p.unlink()
                changed += 1
            elif p.is_dir() and not any(p.iterdir()):
                p.rmdir()
    return changed
