"""The event model: documented events, their quirks, and every reason a body is unreadable."""

import json

import pytest
from conftest import SAMPLE_NAMES, event_body, sample_bytes

from tbhook.model import events
from tbhook.model.events import COLUMNS, Event, Unreadable, label, parse


@pytest.fixture(autouse=True, params=["orjson", "stdlib"])
def json_loader(request, monkeypatch):
    """Every test runs with the orjson fast path and with the standard library alone."""
    if request.param == "stdlib":
        monkeypatch.setattr(events, "orjson", None)
    else:
        assert events.orjson is not None


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_every_sample_is_a_readable_event(name):
    payload = json.loads(sample_bytes(name))
    event = parse(sample_bytes(name))
    assert isinstance(event, Event)
    assert event.event == payload["event"]
    assert event.timestamp == payload["timestamp"]
    assert set(event.values) == set(COLUMNS)


def test_case_closed_quirks_false_and_null_become_none():
    event = parse(sample_bytes("case-closed"))
    assert isinstance(event, Event)
    assert event.values["externalPersonId"] is None
    assert event.values["externalCaseId"] is None
    assert event.values["reasonId"] == 111111


def test_case_closed_with_integers_keeps_them():
    payload = json.loads(sample_bytes("case-closed"))
    payload.update(externalPersonId=77, externalCaseId=88, reasonId=None)
    event = parse(json.dumps(payload).encode())
    assert event.values["externalPersonId"] == 77
    assert event.values["externalCaseId"] == 88
    assert event.values["reasonId"] is None


def test_self_merge_from_the_spec_is_readable():
    event = parse(sample_bytes("profile-merged"))
    assert (event.values["oldPersonId"], event.values["newPersonId"]) == (1, 1)


def test_extra_keys_on_a_documented_event_are_accepted():
    event = parse(event_body(newField="hello"))
    assert isinstance(event, Event) and event.values["caseId"] == 11111


def test_unknown_event_keeps_integer_known_keys_only():
    body = json.dumps(
        {
            "event": "caseReopened",
            "caseId": 5,
            "personId": "7",
            "agentId": True,
            "searchId": 2**70,
            "timestamp": 1700000000,
            "note": "x",
        }
    ).encode()
    event = parse(body)
    assert isinstance(event, Event)
    assert event.event == "caseReopened"
    assert event.values["caseId"] == 5
    assert event.values["timestamp"] == 1700000000
    assert event.values["personId"] is None  # a string, not an int
    assert event.values["agentId"] is None  # a bool, not an int
    assert event.values["searchId"] is None  # beyond SQLite's 64-bit range


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"", "empty body: the test Tracebuzz sends when a webhook is saved"),
        (b"  \n", "empty body: the test Tracebuzz sends when a webhook is saved"),
        (b"{not json", "not valid JSON: Expecting property name enclosed in double quotes"),
        (b"\xff\xfe{}", "body is not valid UTF-8"),
        (b'{"event": "\xed\xa0\x80"}', "body is not valid UTF-8"),
        (b"[1, 2]", "JSON value is an array, not an object"),
        (b'"newResult"', "JSON value is a string, not an object"),
        (b"42", "JSON value is an integer, not an object"),
        (b"{}", "empty object {}: the test Tracebuzz sends when a webhook is saved"),
        (b'{"event": 5}', '"event" is an integer, not a string'),
        (b'{"event": ""}', '"event" is not a usable name'),
        (b'{"event": "\\ud800"}', '"event" is not a usable name'),
        (b'{"event": "a", "event": "b"}', '"event" key appears more than once'),
        (b"[" * 5000 + b"]" * 5000, "JSON nested too deeply"),
        (b'{"event": "x", "n": NaN}', "NaN is not a JSON number"),
        (b'{"event": "x", "n": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"event": "x", "n": ' + b"9" * 5000 + b"}", "not valid JSON: Exceeds the limit"),
    ],
)
def test_unreadable_bodies_say_why(body, reason):
    result = parse(body)
    assert isinstance(result, Unreadable)
    assert result.reason.startswith(reason)


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("caseId", True, 'newResult: "caseId" must be an integer, got true'),
        ("caseId", 1.5, 'newResult: "caseId" must be an integer, got a fraction'),
        ("caseId", 1.0, 'newResult: "caseId" must be an integer, got a fraction'),
        ("caseId", "12", 'newResult: "caseId" must be an integer, got a string'),
        ("caseId", None, 'newResult: "caseId" must be an integer, got null'),
        ("caseId", 10**30, 'newResult: "caseId" is too large for a 64-bit integer'),
        ("timestamp", -(2**63) - 1, 'newResult: "timestamp" is too large for a 64-bit integer'),
    ],
)
def test_documented_event_with_wrong_types_is_unreadable(field, value, reason):
    result = parse(event_body(**{field: value}))
    assert result == Unreadable(reason)


@pytest.mark.parametrize("field, value", [("typeId", 9), ("typeId", 0), ("own", 2), ("own", -1)])
def test_a_value_the_spec_does_not_list_is_kept_as_an_event(field, value):
    """A new Tracebuzz message type must not vanish into quarantine: it is an event."""
    result = parse(event_body(**{field: value}))
    assert isinstance(result, Event) and result.values[field] == value
    assert label(field, value) == f"unknown ({value})"


def test_float_overflow_in_a_documented_field_is_unreadable():
    body = event_body().replace(b'"caseId": 11111', b'"caseId": 1e400')
    assert parse(body) == Unreadable(
        'newResult: "caseId" must be an integer, got a number out of range'
    )


def test_missing_and_duplicated_fields_are_unreadable():
    payload = json.loads(sample_bytes("case-closed"))
    del payload["agentId"]
    assert parse(json.dumps(payload).encode()) == Unreadable('caseClosed: missing "agentId"')
    twice = sample_bytes("new-incoming-message").replace(b'"own": 0', b'"own": 0, "own": 1')
    assert parse(twice) == Unreadable('newResult: "own" appears more than once')


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("externalPersonId", True, "must be an integer or false, got true"),
        ("externalPersonId", None, "must be an integer or false, got null"),
        ("externalCaseId", False, "must be an integer or null, got false"),
        ("reasonId", "r", "must be an integer or null, got a string"),
    ],
)
def test_case_closed_optional_fields_allow_only_their_documented_extra(field, value, reason):
    payload = json.loads(sample_bytes("case-closed"))
    payload[field] = value
    assert parse(json.dumps(payload).encode()) == Unreadable(f'caseClosed: "{field}" {reason}')


def test_utf8_bom_is_tolerated():
    assert isinstance(parse(b"\xef\xbb\xbf" + sample_bytes("case-closed")), Event)


def test_every_problem_is_reported_at_once_in_spec_order():
    body = b'{"event": "newResult", "typeId": 9, "caseId": "12", "own": 0, "personId": true}'
    assert parse(body) == Unreadable(
        'newResult: missing "searchId", "uniqueId", "resultId", "handlerId", "sourceId", '
        '"connectionId", "timestamp"; "personId" must be an integer, got true; '
        '"caseId" must be an integer, got a string'
    )
