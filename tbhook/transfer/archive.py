"""`tbhook prune --archive`: the archive file, a gzip stream of raw event bodies, one per line,
that `tbhook import` loads back.

An archive is only ever appended to (a new gzip member, written to a copy that replaces the
file once complete), and only once it has been read whole and found to be an archive: a text
file or an export is never mistaken for one. A body already in the archive (a prune that was
interrupted while deleting, then run again) is not written twice.
"""

from __future__ import annotations

import gzip
import json
import shutil
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

from tbhook.errors import TbhookError
from tbhook.transfer.files import create_private, replacing

# Keys tbhook adds to an exported event: a line with one of them is an export, not a body.
EXPORT_KEYS = ("receivedAt", "canonicalPersonId", "deliveries", "bodySha256")
Progress = Callable[[int], None]


def line_of(body: bytes) -> bytes:
    """A body as one archive line: as it came, or, when it spans lines (a pretty-printed body),
    compacted to fit on one."""
    if b"\n" in body or b"\r" in body:
        return json.dumps(json.loads(body), separators=(",", ":")).encode()
    return body


def key(line: bytes) -> bytes:
    import hashlib  # see store.rows.row_params

    return hashlib.sha256(line).digest()[:16]


def lines_in(path: Path, progress: Progress | None = None) -> set[bytes]:
    """The keys of the lines an existing archive holds; TbhookError when ``path`` is not a
    tbhook archive (not gzip, damaged, or lines that are not event bodies)."""
    if path.stat().st_size == 0:
        return set()
    found: set[bytes] = set()
    number = 0
    try:
        with gzip.open(path, "rb") as stream:
            for number, line in enumerate(stream, 1):
                body = line.rstrip(b"\r\n")
                if body:
                    _check_body(path, number, body)
                    found.add(key(body))
                if progress and number % 1000 == 0:
                    progress(1000)
    except (gzip.BadGzipFile, zlib.error, EOFError, OSError) as exc:
        what = "not gzip" if number == 0 else f"damaged after line {number}"
        raise TbhookError(
            f"{path} is not a tbhook archive ({what}: {exc}); nothing was deleted. "
            "Give --archive a new file, or an archive an earlier prune wrote"
        ) from exc
    return found


def _check_body(path: Path, number: int, line: bytes) -> None:
    try:
        value = json.loads(line)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not isinstance(value.get("event"), str):
        why = "it is not a Tracebuzz event"
    elif any(name in value for name in EXPORT_KEYS):
        why = "it is an exported row (`tbhook export`), not a body as it was received"
    else:
        return
    raise TbhookError(
        f"{path} is not a tbhook archive (line {number}: {why}); nothing was deleted. "
        "Give --archive a new file, or an archive an earlier prune wrote"
    )


def write(
    path: Path, bodies: Iterable[bytes], known: set[bytes], progress: Progress | None = None
) -> tuple[int, int]:
    """Write ``bodies`` as a new gzip member after the archive's existing members (``known``
    holds the keys of their lines; a body among them is skipped). The archive is complete and
    on disk before this returns. How many bodies were written, and how many skipped."""
    written = skipped = 0
    with replacing(path, "prune") as temp, create_private(temp, binary=True) as raw:
        if path.exists():
            with open(path, "rb") as existing:
                shutil.copyfileobj(existing, raw, 1 << 20)
        with gzip.GzipFile(path.name.removesuffix(".gz"), "wb", fileobj=raw) as out:
            for n, body in enumerate(bodies, 1):
                line = line_of(body)
                if key(line) in known:
                    skipped += 1
                else:
                    out.write(line + b"\n")
                    written += 1
                if progress and n % 1000 == 0:
                    progress(1000)
        if progress:
            progress((written + skipped) % 1000)
    return written, skipped
