"""Where experiment files live: a local folder, or a URI on object storage
(`s3://bucket/prefix`, `gs://…`, any scheme `pyarrow.fs.FileSystem.from_uri` knows).

A location is a plain string (or Path). Local paths keep going through the local
file system exactly as before (atomic writes via ablate/io.py); URIs go through
pyarrow's file system for their scheme, the same one Ray Tune / Train / Data use
for a `storage_path`, so every process that can reach the bucket reads and writes
the same objects.

Credentials and endpoint come from the standard environment (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY / AWS_PROFILE, AWS_ENDPOINT_URL for an S3-compatible
server, or the machine's instance profile), never from the URI: experiment paths
are joined under the URI, and a query string (`?endpoint_override=…`) would end up
in the middle of them, so URIs with one are refused.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ablate.errors import AblateError, InputMissing
from ablate.io import atomic_path, sha256_file, sha256_stream, write_bytes_atomic

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
ENV_HINT = ("credentials and endpoint come from the standard AWS environment (AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY or AWS_PROFILE, AWS_ENDPOINT_URL for a non-AWS server, or the instance profile)")


class StorageError(AblateError, OSError):
    """An object-store location cannot be used; the message names the URI."""


def is_uri(location: str | os.PathLike) -> bool:
    return bool(_SCHEME.match(str(location)))


def _check_uri(uri: str) -> str:
    if "?" in uri or "#" in uri:
        raise StorageError(f"{uri}: a query or fragment is not supported in an experiment URI; "
                           f"set the endpoint and credentials in the environment instead ({ENV_HINT})")
    return uri.rstrip("/") if not uri.endswith("://") else uri


def normalize(location: str | os.PathLike) -> str:
    """A URI without a trailing slash; a local path made absolute."""
    s = str(location)
    return _check_uri(s) if is_uri(s) else str(Path(s).expanduser().resolve())


def join(location: str | os.PathLike, *parts: str) -> str:
    s = str(location)
    if is_uri(s):
        return "/".join([_check_uri(s), *(p.strip("/") for p in parts)])
    return str(Path(s, *parts))


def split(uri: str) -> tuple[str, str]:
    """(parent URI, leaf name) of a URI with at least one folder below the bucket."""
    uri = _check_uri(uri)
    scheme, rest = uri.split("://", 1)
    if "/" not in rest.strip("/"):
        raise StorageError(f"{uri}: name a folder inside the bucket (e.g. {uri}/my-experiment), not the bucket itself")
    parent, name = rest.rsplit("/", 1)
    return f"{scheme}://{parent}", name


@contextmanager
def _errors(uri: str) -> Iterator[None]:
    """pyarrow's errors, re-raised naming the URI (FileNotFoundError stays one)."""
    try:
        yield
    except FileNotFoundError as e:
        raise InputMissing(f"{uri}: not found ({e})") from None
    except (OSError, ValueError) as e:
        if isinstance(e, StorageError):
            raise
        hint = f"; {ENV_HINT}" if uri.startswith("s3://") else ""
        raise StorageError(f"{uri}: {e}{hint}") from None


def resolve(location: str | os.PathLike):
    """(pyarrow file system, path on it). Not cached: the environment (endpoint,
    credentials) is read when the file system is made, and may change between calls."""
    import pyarrow.fs as pafs

    s = str(location)
    if not is_uri(s):
        return pafs.LocalFileSystem(), str(Path(s).expanduser().resolve())
    s = _check_uri(s)
    with _errors(s):
        return pafs.FileSystem.from_uri(s)


def as_uri(base: str, fs_path: str | None) -> str | None:
    """The URI of a path on `base`'s file system. Ray reports checkpoint and trial paths
    without the scheme (`bucket/exp/train/...` for s3://bucket/exp); results store
    full URIs so that `ablate evaluate` / `report` find them from anywhere."""
    if not isinstance(fs_path, str) or not fs_path or is_uri(fs_path) or not is_uri(base):
        return fs_path
    _, base_path = resolve(base)
    base = _check_uri(base)
    if not base.endswith(base_path):
        raise StorageError(f"{base}: cannot tell its scheme prefix from its path {base_path!r}")
    return base[: len(base) - len(base_path)] + fs_path  # s3://bkt/exp, bkt/exp -> "s3://" + fs_path


def _info(location: str):
    fs, path = resolve(location)
    with _errors(str(location)):
        return fs.get_file_info(path)


def is_file(location: str | os.PathLike) -> bool:
    import pyarrow.fs as pafs

    if not is_uri(location):
        return Path(location).is_file()
    return _info(str(location)).type == pafs.FileType.File


def is_dir(location: str | os.PathLike) -> bool:
    """A local folder, or a URI prefix with at least one object below it."""
    import pyarrow.fs as pafs

    if not is_uri(location):
        return Path(location).is_dir()
    return _info(str(location)).type == pafs.FileType.Directory


def has_entries(location: str | os.PathLike) -> bool:
    """True when the folder exists and holds anything."""
    if not is_uri(location):
        p = Path(location)
        return p.exists() and any(p.iterdir())
    return bool(list_files(location))


def read_bytes(location: str | os.PathLike) -> bytes:
    if not is_uri(location):
        return Path(location).read_bytes()
    fs, path = resolve(location)
    with _errors(str(location)), fs.open_input_stream(path) as f:
        return f.read()


def read_range(location: str | os.PathLike, offset: int, length: int) -> bytes:
    """`length` bytes from `offset` (a ranged GET on an object store)."""
    fs, path = resolve(location)
    with _errors(str(location)), fs.open_input_file(path) as f:
        return f.read_at(length, offset)


def read_text(location: str | os.PathLike) -> str:
    return read_bytes(location).decode()


def write_bytes(location: str | os.PathLike, data: bytes) -> None:
    """Atomic either way: locally by rename (ablate/io.py); on an object store an
    object only becomes visible once its upload has completed."""
    if not is_uri(location):
        write_bytes_atomic(location, data)
        return
    fs, path = resolve(location)
    with _errors(str(location)), fs.open_output_stream(path) as f:
        f.write(data)


def write_text(location: str | os.PathLike, text: str) -> None:
    write_bytes(location, text.encode())


def read_parquet(location: str | os.PathLike):
    import pandas as pd

    if not is_uri(location):
        return pd.read_parquet(location)
    return pd.read_parquet(io.BytesIO(read_bytes(location)))


def write_parquet(df, location: str | os.PathLike) -> None:
    """A pandas DataFrame as Parquet (index dropped)."""
    if not is_uri(location):
        with atomic_path(location) as tmp:
            df.to_parquet(tmp, index=False)
        return
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    write_bytes(location, buf.getvalue())


# A cell starting with one of these is a formula to a spreadsheet (=HYPERLINK(...), +cmd|...):
# a file or combination named "=..." must not run when the user opens rejects.csv or
# results.csv in Excel (OWASP, CSV injection).
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """`text` safe for a spreadsheet: prefixed with a single quote (OWASP's advice) when it
    would start a formula; csv_uncell reverses it."""
    return "'" + text if text.startswith(_FORMULA) else text


def csv_uncell(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith(_FORMULA) else text


def write_csv(df, location: str | os.PathLike) -> None:
    """`df` as CSV (atomically), every text cell through `csv_cell`: these files are for
    spreadsheets (results.parquet is the table programs read)."""
    from pandas.api.types import is_object_dtype, is_string_dtype

    df = df.copy()
    for col in df.columns:
        if is_object_dtype(df[col]) or is_string_dtype(df[col]):
            df[col] = df[col].map(lambda v: csv_cell(v) if isinstance(v, str) else v)
    if not is_uri(location):
        with atomic_path(location) as tmp:
            df.to_csv(tmp, index=False)
        return
    write_bytes(location, df.to_csv(index=False).encode())


def sha256(location: str | os.PathLike) -> str:
    if not is_uri(location):
        return sha256_file(location)
    fs, path = resolve(location)
    with _errors(str(location)), fs.open_input_stream(path) as f:
        return sha256_stream(f)


def list_files(location: str | os.PathLike) -> dict[str, int]:
    """{path relative to `location` ('/'-separated): size} of every file below it; {} when there is none."""
    import pyarrow.fs as pafs

    fs, base = resolve(location)
    with _errors(str(location)):
        infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True, recursive=True))
    prefix = base.rstrip("/") + "/"
    return {i.path[len(prefix):]: i.size for i in infos if i.type == pafs.FileType.File and i.path.startswith(prefix)}


def delete_dir(location: str | os.PathLike) -> None:
    """Remove everything below `location` (nothing to do when it does not exist)."""
    import pyarrow.fs as pafs

    fs, path = resolve(location)
    with _errors(str(location)):
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            fs.delete_dir(path)


def upload_dir(local: str | os.PathLike, location: str | os.PathLike) -> list[str]:
    """Copy every file under the local folder to the same relative paths under `location`."""
    local = Path(local)
    written = []
    for p in sorted(local.rglob("*")):
        if p.is_file():
            rel = p.relative_to(local).as_posix()
            write_bytes(join(location, rel), p.read_bytes())
            written.append(rel)
    return written


def download(location: str | os.PathLike, local: str | os.PathLike) -> Path:
    """One file to a local path (atomic)."""
    local = Path(local)
    write_bytes_atomic(local, read_bytes(location))
    return local


def download_dir(location: str | os.PathLike, local: str | os.PathLike) -> list[str]:
    """Every file below `location` to the same relative paths under the local folder."""
    files = list_files(location)
    for rel in sorted(files):
        download(join(location, rel), Path(local, rel))
    return sorted(files)


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """One file from and to a local path or a URI, streamed (pretrained files are gigabytes)."""
    import pyarrow.fs as pafs

    sfs, spath = resolve(src)
    dfs, dpath = resolve(dst)
    if not is_uri(dst):
        Path(dpath).parent.mkdir(parents=True, exist_ok=True)
    with _errors(f"{src} -> {dst}"):
        pafs.copy_files(spath, dpath, source_filesystem=sfs, destination_filesystem=dfs)
