"""Where bodies come from for `send` and `import`: samples, JSON files, NDJSON files, stdin."""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import IO, Any

from tbhook.errors import TbhookError
from tbhook.model.events import array_items


def _samples():
    """The shipped samples' folder (inside the zip of `make dist` too)."""
    from importlib import resources  # 6 ms (zipfile, tempfile): only for a sample

    return resources.files("tbhook") / "samples"


def sample_names() -> list[str]:
    """The file stems of the shipped samples, e.g. ``case-closed``."""
    return sorted(
        entry.name.rsplit(".", 1)[0]
        for entry in _samples().iterdir()
        if entry.name.endswith((".json", ".ndjson"))
    )


def open_source(source: str) -> tuple[IO[bytes], str]:
    """A sample name, a file path, or ``-`` for stdin, opened for reading bytes."""
    if source == "-":
        return sys.stdin.buffer, "stdin"
    for suffix in (".json", ".ndjson"):
        sample = _samples() / f"{source}{suffix}"
        if "/" not in source and sample.is_file():
            return sample.open("rb"), source
    path = Path(source)
    if not path.is_file():
        names = ", ".join(sample_names())
        raise TbhookError(f"{source} is neither a file nor a sample (samples: {names})")
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise TbhookError(f"cannot read {source}: {exc.strerror}") from exc
    if stream.peek(2)[:2] == b"\x1f\x8b":  # gzip, such as a `tbhook prune --archive` file
        return GzipLines(stream, source), source  # type: ignore[return-value]
    return stream, source


class GzipLines:
    """The lines of a gzip file (every member), read so that a file cut short still gives
    every complete line before the cut; ``check`` then says what was lost."""

    def __init__(self, raw: IO[bytes], name: str):
        self._raw = raw
        self.name = name
        self.lines = 0
        self.truncated: str | None = None  # why the stream ended early

    def fileno(self) -> int:
        return self._raw.fileno()

    def __iter__(self) -> Iterator[bytes]:
        pending = b""
        for data in self._decompressed():
            pending += data
            *complete, pending = pending.split(b"\n")
            for line in complete:
                self.lines += 1
                yield line + b"\n"
        if pending and self.truncated is None:
            self.lines += 1
            yield pending  # a last line without a newline, complete

    def _decompressed(self) -> Iterator[bytes]:
        decompressor = zlib.decompressobj(wbits=31)
        fed = False  # whether the current member has begun
        try:
            while block := self._raw.read(1 << 16):
                while block:
                    fed = True
                    yield decompressor.decompress(block)
                    block = b""
                    if decompressor.eof:  # the next member begins in what is left, if any
                        block = decompressor.unused_data
                        decompressor = zlib.decompressobj(wbits=31)
                        fed = False
        except zlib.error as exc:
            self.truncated = f"it is damaged ({exc})"
            return
        if fed and not decompressor.eof:
            self.truncated = "it ends in the middle of a gzip member"
            yield decompressor.flush()

    def check(self) -> None:
        """Raise TbhookError when the file was cut short or damaged."""
        if self.truncated:
            raise TbhookError(
                f"{self.name} is incomplete: {self.truncated}; read the {self.lines} complete "
                "lines before that point"
            )


def bodies(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, raw body) pairs, streamed.

    NDJSON gives one body per non-empty line, byte for byte. A file holding one JSON
    document (a pretty-printed object) is one body, byte for byte. A JSON array, on one line
    or many, gives one body per element, each exactly as written (its number is its position).
    """
    lines = iter(stream)
    first = next(lines, b"")
    while first and not first.strip():
        first = next(lines, b"")
    if not first:
        return
    if _is_json(first):
        if first.lstrip()[:1] == b"[":
            second = next(lines, b"")
            while second and not second.strip():
                second = next(lines, b"")
            if not second:  # the whole file is one array, on one line
                yield from _elements(first)
                return
            lines = chain([second], lines)
        yield from _ndjson(chain([first], lines), 1)
        return
    rest = first + b"".join(lines)
    try:
        json.loads(rest)
    except ValueError:
        yield from _ndjson(rest.splitlines(keepends=True), 1)
        return
    if rest.lstrip()[:1] == b"[":
        yield from _elements(rest)
    else:
        yield 1, rest  # byte for byte, as `curl --data-binary @file` would send it


def _elements(document: bytes) -> Iterator[tuple[int, bytes]]:
    items = array_items(document.decode("utf-8-sig"))
    if items is None:  # not decodable as one array after all: keep it whole
        yield 1, document.strip()
        return
    for index, item in enumerate(items, 1):
        yield index, item.encode("utf-8")


def _ndjson(lines: Iterable[bytes], start: int) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(lines, start):
        line = line.strip()
        if line:
            yield number, line


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` with the value typed as JSON (``caseId=42``); a bare word is a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"{text!r} is not key=value")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def override(
    body: bytes,
    assignments: dict[str, Any],
    timestamp: int | None,
    additions: dict[str, Any] | None = None,
) -> tuple[bytes, set[str]]:
    """The body with fields replaced, and which ``assignments`` it had keys for.

    ``assignments`` (``--set``) change only keys the body already has, so setting ``caseId``
    on a conversation leaves its ``profileMerged`` as Tracebuzz sends it; ``additions``
    (``--add``) are set whether or not the key is there. Unchanged, byte for byte, when there
    is nothing to set.
    """
    if not assignments and not additions and timestamp is None:
        return body, set()
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise TbhookError("cannot --set, --add or --now on a body that is not a JSON object")
    applied = {key for key in assignments if key in payload}
    payload.update({key: assignments[key] for key in applied})
    payload.update(additions or {})
    if timestamp is not None:
        payload["timestamp"] = timestamp
    return json.dumps(payload, separators=(",", ":")).encode(), applied
