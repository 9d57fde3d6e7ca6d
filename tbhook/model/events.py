"""The Tracebuzz event model: parse and validate one delivered body. Pure, no I/O.

The vendor's documentation is the spec. Its quirks are kept on purpose:
``externalPersonId`` is ``false`` when absent, ``externalCaseId`` and ``reasonId``
may be ``null``, and the documented ``profileMerged`` example merges 1 into 1.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import math
import re
from dataclasses import dataclass, field
from typing import Any, TypeGuard

try:  # a compiled speed-up; the standard library does the same work without it
    import orjson
except ImportError:  # pragma: no cover - exercised by the single-file build
    orjson = None  # type: ignore[assignment]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

TYPE_LABELS = {
    1: "page",
    2: "post",
    3: "comment",
    4: "private message",
    5: "ad",
    6: "system message",
}
SENDER_LABELS = {0: "customer", 1: "agent"}
# The spec's retry table: minutes Tracebuzz waits after each failed delivery; after the last
# one it disables the webhook.
SCHEDULE_MINUTES = (5, 7, 21, 59, 133, 255, 437, 691, 1029, 1758)

# How each documented field may look. "int" is a real JSON integer (never a bool,
# a float or a string); the others add the one extra value the spec allows.
INT, INT_OR_NULL, INT_OR_FALSE = "int", "int or null", "int or false"

SCHEMAS: dict[str, dict[str, str]] = {
    "newResult": {
        "searchId": INT,
        "uniqueId": INT,
        "resultId": INT,
        "personId": INT,
        "caseId": INT,
        "handlerId": INT,
        "sourceId": INT,
        "connectionId": INT,
        "typeId": INT,
        "own": INT,
        "timestamp": INT,
    },
    "caseClosed": {
        "searchId": INT,
        "caseId": INT,
        "externalCaseId": INT_OR_NULL,
        "reasonId": INT_OR_NULL,
        "personId": INT,
        "externalPersonId": INT_OR_FALSE,
        "agentId": INT,
        "resultId": INT,
        "connectionId": INT,
        "timestamp": INT,
    },
    "profileMerged": {
        "oldPersonId": INT,
        "newPersonId": INT,
        "timestamp": INT,
    },
}

# Every payload key that has a column of its own, in a stable order.
PAYLOAD_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(key for schema in SCHEMAS.values() for key in schema if key != "timestamp")
)
COLUMNS: tuple[str, ...] = ("timestamp", *PAYLOAD_COLUMNS)
# An event as every read command and the export give it, in this order: Tracebuzz's names
# plus the id, when it came, the ISO time and the person's current ID after merges.
EVENT_FIELDS: tuple[str, ...] = (
    "id",
    "receivedAt",
    "event",
    "timestamp",
    "time",
    *PAYLOAD_COLUMNS,
    "canonicalPersonId",
    "deliveries",
)

# Values the spec enumerates. A value it does not list (a new message type) is still a readable
# event: it is kept as an event, labelled ``unknown (9)``, and `doctor` and `stats` list it.
ENUMERATED = {"typeId": TYPE_LABELS, "own": SENDER_LABELS}


def label(key: str, value: int | None) -> str | None:
    """The spec's word for an enumerated value (``private message``, ``agent``), or
    ``unknown (9)`` for a value it does not list; None for a missing value."""
    if value is None:
        return None
    return ENUMERATED[key].get(value, f"unknown ({value})")


@dataclass(frozen=True)
class Event:
    """A readable event: its name and one value (or None) per known column."""

    event: str
    values: dict[str, int | None] = field(default_factory=dict)

    @property
    def timestamp(self) -> int | None:
        # Part of SQLite's dedupe key (m014: timestamp, body hash): the same body must give
        # the same timestamp in every version of tbhook, or a retry would be a second row.
        return self.values.get("timestamp")


@dataclass(frozen=True)
class Unreadable:
    """An authenticated body that is not a readable event, and why, in plain words."""

    reason: str


def is_test_delivery(body: bytes) -> bool:
    """Whether a body is the empty POST Tracebuzz sends to test the URL when a webhook is
    saved (nothing, or ``{}``): kept in quarantine, but not a problem."""
    return body.strip() in (b"", b"{}")


def parse(body: bytes) -> Event | Unreadable:
    """Parse one delivered body into an Event, or say why it is Unreadable."""
    if is_test_delivery(body):
        what = "empty body" if not body.strip() else "empty object {}"
        return Unreadable(f"{what}: the test Tracebuzz sends when a webhook is saved")
    loaded = _fast_load(body)
    if loaded is not None and _plain(loaded, body):
        return _from_object(loaded, set())
    try:
        text = body.decode("utf-8-sig")  # RFC 8259: JSON on the wire is UTF-8
    except UnicodeDecodeError:
        return Unreadable("body is not valid UTF-8")
    try:
        # An object orjson already read is valid JSON: only its top level is walked again.
        payload, repeated = _top_level_pairs(text) if loaded is not None else _load(text)
    except _NonFinite as exc:
        return Unreadable(f"{exc} is not a JSON number")
    except RecursionError:
        return Unreadable("JSON nested too deeply")
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        return Unreadable(f"not valid JSON: {exc}")
    if not isinstance(payload, dict):
        return Unreadable(f"JSON value is {_kind(payload)}, not an object")
    return _from_object(payload, repeated)


def _fast_load(body: bytes) -> dict[str, Any] | None:
    """A JSON object read by orjson (about 5x faster than json), or None: anything orjson
    refuses, and anything but an object, takes the careful path."""
    if orjson is None:
        return None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return payload if type(payload) is dict else None


def _plain(payload: dict[str, Any], body: bytes) -> bool:
    """Whether orjson's reading stands as it is: no float at the top (orjson turns a 30-digit
    integer into one) and no place where a top-level key may have repeated."""
    return len(_KEY_END_BYTES.findall(body)) == len(payload) and not any(
        type(value) is float for value in payload.values()
    )


_KEY_END = re.compile(r'"\s*:')
_KEY_END_BYTES = re.compile(rb'"\s*:')


def _load(text: str) -> tuple[Any, set[str]]:
    """The JSON value, and the top-level keys that appear more than once.

    Every key is followed by ``"`` and ``:``; when there are no more such places than keys
    in the parsed object, no key can have repeated, and the plain parse stands. Otherwise the
    top level is walked again, its values parsed by the C scanner: nested objects (whose
    repeated keys do not matter) cost no Python per object, so a megabyte of them takes
    milliseconds, not the best part of a second.
    """
    payload = _DECODER.decode(text)
    if not isinstance(payload, dict) or len(_KEY_END.findall(text)) == len(payload):
        return payload, set()
    return _top_level_pairs(text)


def _top_level_pairs(text: str) -> tuple[dict[str, Any], set[str]]:
    """Walk a JSON object already known to be valid: its keys in order, the last value of
    each (as json does), and which keys repeated."""
    pairs: dict[str, Any] = {}
    repeated: set[str] = set()
    index = _skip(text, text.index("{") + 1)
    if text[index] == "}":
        return pairs, repeated
    while True:
        key, index = _scanstring(text, index + 1, True)  # past the opening quote
        index = _skip(text, index) + 1  # past the colon
        value, index = _SCAN(text, _skip(text, index))
        if key in pairs:
            repeated.add(key)
        pairs[key] = value
        index = _skip(text, index)
        if text[index] == "}":
            return pairs, repeated
        index = _skip(text, index + 1)  # past the comma


def array_items(text: str) -> list[str] | None:
    """The exact text of each element of a JSON array (so each can be stored byte for byte),
    or None when ``text`` is not one JSON array."""
    try:
        start = _skip(text, 0)
        if text[start] != "[":
            return None
        items: list[str] = []
        index = _skip(text, start + 1)
        if text[index] == "]":
            return items if text[_skip_end(text, index + 1) :] == "" else None
        while True:
            _, end = _SCAN(text, index)
            items.append(text[index:end])
            index = _skip(text, end)
            if text[index] == "]":
                return items if text[_skip_end(text, index + 1) :] == "" else None
            if text[index] != ",":
                return None
            index = _skip(text, index + 1)
    except (IndexError, StopIteration, ValueError, RecursionError):
        return None


def _skip_end(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\n\r":
        index += 1
    return index


def _skip(text: str, index: int) -> int:
    """The index of the first character at or after ``index`` that is not JSON whitespace."""
    while text[index] in " \t\n\r":
        index += 1
    return index


def _from_object(pairs: dict[str, Any], repeated: set[str]) -> Event | Unreadable:
    if "event" not in pairs:
        return Unreadable('object has no "event" key')
    if "event" in repeated:
        return Unreadable('"event" key appears more than once')
    name = pairs["event"]
    if not isinstance(name, str):
        return Unreadable(f'"event" is {_kind(name)}, not a string')
    if not name or not _is_text(name):
        return Unreadable('"event" is not a usable name')
    schema = SCHEMAS.get(name)
    if schema is None:
        return Event(name, _lenient_values(pairs, repeated))
    return _validated(name, schema, pairs, repeated)


def _validated(
    name: str, schema: dict[str, str], pairs: dict[str, Any], repeated: set[str]
) -> Event | Unreadable:
    values: dict[str, int | None] = dict.fromkeys(COLUMNS)
    for key in schema:
        value = pairs.get(key)
        # The common case, checked cheaply: a plain in-range int (bool is a subclass of int,
        # so its exact type is compared) with nothing else to say about it.
        if type(value) is int and INT64_MIN <= value <= INT64_MAX and key not in repeated:
            values[key] = value
            continue
        if value is None and schema[key] == INT_OR_NULL and key in pairs and key not in repeated:
            continue
        if value is False and schema[key] == INT_OR_FALSE and key not in repeated:
            continue
        return _problems(name, schema, pairs, repeated)
    return Event(name, values)


def _problems(
    name: str, schema: dict[str, str], pairs: dict[str, Any], repeated: set[str]
) -> Unreadable:
    """Every problem at once, in the spec's order, so one look at quarantine says it all."""
    missing = [f'"{key}"' for key in schema if key not in pairs]
    problems = [f"missing {', '.join(missing)}"] if missing else []
    for key, allowed in schema.items():
        if key in pairs:
            problem = _field_problem(pairs[key], allowed, key in repeated)
            if problem:
                problems.append(f'"{key}" {problem}')
    return Unreadable(f"{name}: " + "; ".join(problems))


def _field_problem(value: Any, allowed: str, repeated: bool) -> str | None:
    if repeated:
        return "appears more than once"
    return _type_problem(value, allowed)


def _type_problem(value: Any, allowed: str) -> str | None:
    if value is None and allowed == INT_OR_NULL:
        return None
    if value is False and allowed == INT_OR_FALSE:
        return None
    if not _is_int(value):
        return f"must be {_article(allowed)}, got {_kind(value)}"
    if not _fits(value):
        return "is too large for a 64-bit integer"
    return None


def _lenient_values(pairs: dict[str, Any], repeated: set[str]) -> dict[str, int | None]:
    """Known keys of an unknown event: copy real 64-bit integers, leave the rest NULL."""
    values: dict[str, int | None] = dict.fromkeys(COLUMNS)
    for key in COLUMNS:
        value = pairs.get(key)
        if key not in repeated and _is_int(value) and _fits(value):
            values[key] = value
    return values


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _fits(value: int) -> bool:
    return INT64_MIN <= value <= INT64_MAX


def _is_text(value: str) -> bool:
    """Storable as text in SQLite and PostgreSQL alike: valid UTF-8 and no NUL character
    (PostgreSQL's text cannot hold one)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape
        return False
    return True


def _article(allowed: str) -> str:
    return "an " + allowed.replace("int", "integer", 1)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a fraction" if math.isfinite(value) else "a number out of range"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


class _NonFinite(ValueError):
    pass


def _reject(constant: str) -> Any:
    raise _NonFinite(constant)


_DECODER = json.JSONDecoder(parse_constant=_reject)
_SCAN = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]  # the C scanner
_scanstring = json.decoder.scanstring  # type: ignore[attr-defined]
