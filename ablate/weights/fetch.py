"""Fetching pretrained files the way their ecosystems do, and checking a whole grid's files at once.

  url          a plain GET (weights_http.download) into <torch.hub.get_dir()>/checkpoints,
               checked against the table's sha256 prefix as torchvision's
               load_state_dict_from_url(check_hash=True) does, without loading the
               file. It downloads to a staging name beside the destination; the file
               takes its real name only after every hash check passed.
  huggingface  huggingface_hub.hf_hub_download into the Hugging Face cache, with the
               user's token (HF_TOKEN or `hf auth login`); endpoint and cache are read
               from HF_ENDPOINT / HF_HOME / HF_HUB_CACHE at call time. A file that
               fails its hash is deleted from the cache (blob and snapshot link), and so
               is a partial download this call left (`*.incomplete`).

Before any request the host is probed with one TCP connect, and every read has a timeout
(weights_http: 10 s to connect, 60 s of silence, both set by environment variables): an
offline compute node hears at once which files it lacks, and a server that accepts and
never answers fails in one read timeout instead of hanging the command.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from ablate.weights import WeightsMissing
from ablate.weights.http import answers, download, timeouts
from ablate.weights.table import (
    TABLE,
    PretrainedFile,
    WeightsHashMismatch,
    cached_path,
    checked_against,
    entry,
    get_it,
    given_path,
    hash_problems,
    hf_hub_cache,
    locate,
    missing_message,
    sha256_file,
    torch_checkpoints_dir,
    verify_file,
    write_record,
)

HF_DEFAULT_ENDPOINT = "https://huggingface.co"


class WeightsAccessDenied(WeightsMissing):
    """The Hub refused a gated file (401/403): the message says how to get access."""


def hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT).rstrip("/")


def source_url(e: PretrainedFile) -> str:
    """The URL a `url` entry is fetched from: the table's, or its url_env override (a mirror)."""
    return (os.environ.get(e.url_env) or e.origin) if e.url_env else e.origin


def _refuse(e: PretrainedFile, url: str, digest: str, problems: list[str], where: Path) -> WeightsHashMismatch:
    return WeightsHashMismatch(
        f"{e.name}: the file {e.file} downloaded from {url} was refused: its sha256 is {digest}, but "
        f"{'; '.join(problems)}. Nothing was kept in {where}. Try again (a proxy or mirror may have altered it); "
        f"if it persists, the source now serves another file than the one this table describes."
    )


def _fetch_url(e: PretrainedFile) -> Path:
    url, dest = source_url(e), torch_checkpoints_dir() / e.file
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(f"{dest.name}.{uuid.uuid4().hex[:8]}.staging")
    try:
        download(url, staging)  # bounded reads; the prefix is checked below with the other hashes
        digest = sha256_file(staging)
        problems = hash_problems(e, staging, digest)
        if problems:
            raise _refuse(e, url, digest, problems, dest.parent)
        os.replace(staging, dest)
    finally:
        staging.unlink(missing_ok=True)
    write_record(e.name, dest, digest, checked_against(e, dest))
    return dest


def _token_state() -> str:
    from huggingface_hub import get_token

    if get_token() is None:
        return "No token was sent: HF_TOKEN is unset and there is no `hf auth login` on this machine."
    source = "$HF_TOKEN" if os.environ.get("HF_TOKEN") else "the `hf auth login` token"
    return (f"A token was sent (from {source}) but has no access to this repo yet: accept the terms with the "
            "account it belongs to, or use a token of an account that has.")


def gated_message(e: PretrainedFile, code: int | str, needed_by: tuple[str, ...] = ()) -> str:
    """What to do when the Hub refuses a gated file, naming the combinations that need it."""
    page = f"{HF_DEFAULT_ENDPOINT}/{e.origin}"
    by = f" Needed by: {', '.join(needed_by)}." if needed_by else ""
    via = f" (requests went to HF_ENDPOINT={hf_endpoint()})" if hf_endpoint() != HF_DEFAULT_ENDPOINT else ""
    return (
        f"{e.name}: {e.file} is gated on Hugging Face and the Hub refused it ({code}){via}.{by} To get it: "
        f"(1) open {page}, log in and accept the authors' terms (access is granted per account); "
        f"(2) give this machine your token: `hf auth login`, or export HF_TOKEN=<a read token from "
        f"{HF_DEFAULT_ENDPOINT}/settings/tokens>; (3) run `ablate weights fetch {e.name}`. {_token_state()} "
        f"Or copy the file here and set ${e.env}=/path/to/{e.file}."
    )


def _discard_hf(pointer: Path) -> None:
    """Remove a refused download from the HF cache: the snapshot link and the blob it points to."""
    blob = pointer.resolve()
    pointer.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def _fetch_hf(e: PretrainedFile, needed_by: tuple[str, ...], force: bool) -> Path:
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        raise WeightsMissing(f"could not fetch {e.origin}/{e.file}: HF_HUB_OFFLINE is set")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    endpoint = hf_endpoint()
    url = f"{endpoint}/{e.origin}/resolve/main/{e.file}"
    answers(url)  # a silent endpoint fails here in one read timeout, not in huggingface_hub's retries
    blobs = hf_hub_cache() / f"models--{e.origin.replace('/', '--')}" / "blobs"
    partial_before = set(blobs.glob("*.incomplete"))
    try:
        try:
            pointer = Path(hf_hub_download(e.origin, e.file, cache_dir=str(hf_hub_cache()), endpoint=endpoint,
                                           force_download=force, etag_timeout=timeouts()[1]))
        except BaseException:
            for partial in set(blobs.glob("*.incomplete")) - partial_before:  # ours, from this call: no resume
                partial.unlink(missing_ok=True)
            raise
    except HfHubHTTPError as err:  # GatedRepoError and RepositoryNotFoundError are subclasses
        code = err.response.status_code if err.response is not None else "?"
        if isinstance(err, RepositoryNotFoundError) or code in (401, 403):
            raise WeightsAccessDenied(gated_message(e, code, needed_by)) from err
        raise WeightsMissing(f"could not fetch {url}: {err}") from err
    except OSError as err:  # LocalEntryNotFoundError (connection lost, bad endpoint), disk errors
        raise WeightsMissing(f"could not fetch {url}: {err}") from err
    digest = sha256_file(pointer)
    problems = hash_problems(e, pointer, digest)
    if problems:
        _discard_hf(pointer)
        raise _refuse(e, url, digest, problems, hf_hub_cache())
    write_record(e.name, pointer, digest, checked_against(e, pointer))
    return pointer


def fetch_file(name: str, *, force: bool = False, needed_by: tuple[str, ...] = ()) -> Path:
    """Download `name` into its cache and verify it; a file already cached is only verified (no network)
    unless force. Raises WeightsMissing (unreachable; not downloadable), WeightsAccessDenied (gated),
    WeightsHashMismatch (refused and deleted). `needed_by` names combinations for the messages."""
    e = entry(name)
    if not e.fetchable:
        raise WeightsMissing(f"{e.name} ({e.file}) is not downloaded: {get_it(e)}")
    if not force:
        existing = cached_path(e)
        if existing is not None and existing.is_file():
            verify_file(e, existing)
            return existing
    try:
        return _fetch_url(e) if e.source == "url" else _fetch_hf(e, needed_by, force)
    except (WeightsHashMismatch, WeightsAccessDenied):
        raise
    except WeightsMissing as err:  # unreachable, offline, HTTP error: say also where else the file may come from
        raise WeightsMissing(f"{missing_message(e, needed_by)} Fetching it failed: {err}") from err
# ---------------------------------------------------------------- a whole grid at once


def _as_needs(needs) -> dict[str, tuple[str, ...]]:
    """{name: combinations needing it} from a mapping, or from plain names (no combinations)."""
    if hasattr(needs, "items"):
        return {n: tuple(c) for n, c in needs.items()}
    return {n: () for n in needs}


def format_report(failures: dict[str, str], needs: dict[str, tuple[str, ...]]) -> str:
    lines = [(f"{len(failures)} pretrained file(s) missing or refused; nothing was started. For each: what "
              "happened, and the command to fetch it or the place to put it.")]
    for name, why in failures.items():
        e = TABLE[name]
        by = f"  (needed by: {', '.join(needs[name])})" if needs.get(name) else ""
        lines += [f"  - {name}: {e.file}{by}", f"      {why}"]
        if get_it(e) not in why:
            lines.append(f"      get it: {get_it(e)}")
    lines.append(
        "Without network here: run `ablate weights fetch NAME...` on a machine with network, copy the files to "
        f"this machine's caches ($TORCH_HOME/hub/checkpoints = {torch_checkpoints_dir()}; $HF_HOME/hub = "
        f"{hf_hub_cache()}), or set the environment variables above to where the copies are."
    )
    return "\n".join(lines)


def missing_report(needs, overrides: dict | None = None) -> str:
    """One message listing every file in `needs` that is missing or fails its hash, with the command to
    fetch or place each; "" when all are present. `needs`: names, or {name: [combination, ...]}.
    `overrides`: {name: path given by an option}. No network."""
    needs, overrides = _as_needs(needs), overrides or {}
    failures = {}
    for name in needs:
        try:
            locate(name, overrides.get(name))
        except WeightsMissing as err:
            failures[name] = str(err)
    return format_report(failures, needs) if failures else ""


def ensure_available(needs, overrides: dict | None = None, *, fetch: bool = True) -> dict[str, Path]:
    """Every file in `needs`, fetched (and verified) where missing, as {name: path}. Every failure is
    collected first, then raised as one WeightsMissing listing them all (see missing_report)."""
    needs, overrides = _as_needs(needs), overrides or {}
    found, failures = {}, {}
    for name, combos in needs.items():
        try:
            found[name] = resolve(name, overrides.get(name), fetch=fetch, needed_by=combos)
        except WeightsMissing as err:
            failures[name] = str(err)
    if failures:
        raise WeightsMissing(format_report(failures, needs))
    return found


def resolve(name: str, override: str | os.PathLike | None = None, *, fetch: bool = False,
            needed_by: tuple[str, ...] = ()) -> Path:
    """locate(), and with fetch=True a missing downloadable file is fetched (verified) first: what the
    ecosystems do on first use. A given path is never replaced by a download."""
    e = entry(name)
    try:
        return locate(name, override)
    except WeightsHashMismatch:
        raise
    except WeightsMissing:
        if not (fetch and e.fetchable) or given_path(e, override):
            raise
    return fetch_file(name, needed_by=needed_by)
