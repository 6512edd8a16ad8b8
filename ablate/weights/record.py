"""The verification record of one pretrained file: $ABLATE_CACHE/weights/.verified/<name>.json.

ablate writes it (atomically) after a file passed its hash checks: the sha256 seen, the
file's real path, size and mtime (so an unchanged file is not re-hashed at every use) and,
for files without a full sha256 in the table, the pin that later copies must match.

A record that is not what ablate writes (not JSON, binary bytes, a list, a wrong-typed
field, a folder in its place) is refused, not skipped: for a pinned file the record *is* the
pin, so reading a garbled one as "no record" would accept whatever file is now in the cache
as the new pin. The caller says which file it vouches for and what to do (delete it); the
record is never rewritten over, since ablate cannot tell who put those bytes there.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from ablate.errors import AblateError

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# field -> type; the first four are read to decide, the others only shown (a record of an older
# ablate may lack them). bool is refused as an int below: json `true` is not a size.
FIELDS = {"sha256": str, "path": str, "size": int, "mtime_ns": int, "checked": str, "first_verified_utc": str}
REQUIRED = ("sha256", "path", "size", "mtime_ns")


class RecordUnreadable(AblateError, ValueError):
    """The record exists but is not ablate's format; the message says what is wrong with it."""


def load(path: Path) -> dict | None:
    """The record at `path`, checked field by field; None when there is none."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:  # a folder in its place, no permission
        raise RecordUnreadable(f"cannot be read ({err.strerror or err})") from None
    try:
        rec = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise RecordUnreadable("it holds binary bytes, not JSON") from None
    except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError; deep nesting recurses
        raise RecordUnreadable(f"it is not JSON ({str(err)[:80]})") from None
    if not isinstance(rec, dict):
        raise RecordUnreadable(f"it holds a JSON {type(rec).__name__}, not an object")
    for key, kind in FIELDS.items():
        if key not in rec:
            if key in REQUIRED:
                raise RecordUnreadable(f"key {key!r} is missing")
            continue
        value = rec[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RecordUnreadable(f"key {key!r} is {value!r:.40}, not a {kind.__name__}")
    if not SHA256_HEX.fullmatch(rec["sha256"]):
        raise RecordUnreadable(f"key 'sha256' is {rec['sha256']!r:.80}, not 64 lowercase hex digits")
    return rec


def write(out: Path, real: Path, digest: str, checked: str, previous: dict | None) -> None:
    """Record that `real` (a resolved path) has sha256 `digest`; keeps the first-verified time of an
    unchanged pin. Atomic: workers may verify at once, and a reader never sees half a record."""
    st = real.stat()
    first = previous.get("first_verified_utc") if previous and previous.get("sha256") == digest else None
    new = {"sha256": digest, "path": str(real), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "checked": checked,
           "first_verified_utc": first or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(new, indent=1))
    os.replace(tmp, out)
