"""Local stand-ins for the places pretrained files come from, on 127.0.0.1 only.

FileServer       a plain HTTP server (download.pytorch.org's role): GET/HEAD of a path.
SilentServer     accepts connections and never answers (a hung server): the read-timeout case.
HubServer        the two routes hf_hub_download uses on a Hugging Face endpoint
                 (huggingface_hub 2.4, file_download.py): HEAD then GET of
                 /{repo_id}/resolve/{revision}/{filename}. The HEAD answer carries what
                 get_hf_file_metadata reads: X-Repo-Commit (40 hex; here the sha1 of the
                 file, so a changed file is a new commit), X-Linked-Etag (the
                 LFS sha256, quoted), X-Linked-Size; a gated repo answers 401 (no token)
                 or 403 (a token without access) with X-Error-Code: GatedRepo, as the Hub
                 does, which huggingface_hub maps to GatedRepoError.
Both count every request they receive (method, path, Authorization header), so a
test can assert that a second use made none. Started and stopped by the tests'
fixtures; a stopped server's port refuses connections (the "no network" case).
"""

from __future__ import annotations

import hashlib
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # place_in_hf_cache's commit


@dataclass
class Served:
    body: bytes
    claimed_sha256: str | None = None  # what the Hub says the LFS sha256 is; None = the true one

    @property
    def lfs_sha256(self) -> str:
        return self.claimed_sha256 or hashlib.sha256(self.body).hexdigest()


@dataclass
class _State:
    files: dict[str, Served] = field(default_factory=dict)  # URL path -> file
    gated: dict[str, set[str]] = field(default_factory=dict)  # repo id -> tokens with access
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    hub: bool = False


class _Handler(BaseHTTPRequestHandler):
    state: _State  # set per server class

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def _answer(self, send_body: bool) -> None:
        auth = self.headers.get("Authorization")
        self.state.requests.append((self.command, self.path, auth))
        path = self.path.split("?", 1)[0]
        repo = "/".join(path.strip("/").split("/")[:2])
        if self.state.hub and repo in self.state.gated:
            token = auth.removeprefix("Bearer ") if auth else None
            if token not in self.state.gated[repo]:
                self.send_response(401 if token is None else 403)
                self.send_header("X-Error-Code", "GatedRepo")
                self.send_header("X-Error-Message", f"Access to model {repo} is restricted.")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        served = self.state.files.get(path)
        if served is None:
            self.send_response(404)
            if self.state.hub:
                self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(served.body)))
        self.send_header("Content-Type", "application/octet-stream")
        if self.state.hub:
            # A changed file is a new commit, as on the Hub (hf_hub_download keys snapshots by commit).
            self.send_header("X-Repo-Commit", hashlib.sha1(served.body).hexdigest())
            self.send_header("X-Linked-Etag", f'"{served.lfs_sha256}"')
            self.send_header("X-Linked-Size", str(len(served.body)))
            self.send_header("ETag", f'"{served.lfs_sha256}"')
        self.end_headers()
        if send_body:
            self.wfile.write(served.body)


class _Server:
    hub = False

    def __init__(self) -> None:
        self.state = _State(hub=self.hub)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def requests(self) -> list[tuple[str, str, str | None]]:
        return self.state.requests

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class FileServer(_Server):
    def serve(self, path: str, body: bytes) -> str:
        """Serve `body` at `path`; returns its URL."""
        self.state.files[path] = Served(body)
        return self.url + path


class HubServer(_Server):
    hub = True

    def serve(self, repo_id: str, filename: str, body: bytes, *, claimed_sha256: str | None = None,
              gated_tokens: set[str] | None = None) -> None:
        """Serve a file of a repo; claimed_sha256 makes the Hub state a wrong LFS hash; gated_tokens
        makes the repo gated, open only to requests bearing one of those tokens."""
        self.state.files[f"/{repo_id}/resolve/main/{filename}"] = Served(body, claimed_sha256)
        if gated_tokens is not None:
            self.state.gated[repo_id] = set(gated_tokens)


class SilentServer:
    """Accepts every connection on 127.0.0.1 and never sends a byte (a hung server or a proxy
    black hole): what a download without read timeouts waits on for ever."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []  # kept open: a closed one would answer with a reset
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed by stop()
                return
            self.held.append(conn)

    @property
    def connections(self) -> int:
        return len(self.held)

    def stop(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def refused_url() -> str:
    """http://127.0.0.1:<port> where nothing listens (a port just freed): connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def place_in_hf_cache(hub_cache, repo_id: str, filename: str, body: bytes, *, blob_name: str | None = None):
    """Lay a file out as hf_hub_download leaves it: blobs/<LFS sha256>, snapshots/<commit>/<file> -> blob,
    refs/main = commit. Returns the snapshot path. blob_name overrides the blob's (sha256) name."""
    from pathlib import Path

    repo = Path(hub_cache) / f"models--{repo_id.replace('/', '--')}"
    blob = repo / "blobs" / (blob_name or hashlib.sha256(body).hexdigest())
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(body)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    pointer = repo / "snapshots" / COMMIT / filename
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.symlink_to(Path("..") / ".." / "blobs" / blob.name)
    return pointer
