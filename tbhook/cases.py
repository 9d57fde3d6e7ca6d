"""Case timelines and their metrics, from a case's events in time order. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import groupby
from typing import Any

from tbhook.filters import iso_time

CUSTOMER, AGENT = 0, 1
TIMELINE = ("newResult", "caseClosed")  # the events a case is made of

METRICS = (
    "caseId",
    "personId",
    "canonicalPersonId",
    "messages",
    "customerMessages",
    "agentMessages",
    "firstMessageAt",
    "firstResponseSeconds",
    "closedAt",
    "secondsToClose",
    "closed",
    "reopened",
)


def summarize(
    case_id: int, events: list[dict], canonical: Callable[[int | None], int | None]
) -> dict[str, Any]:
    """The metrics of one case. ``events`` are that case's events ordered by timestamp, id."""
    timeline = [e for e in events if e["event"] in TIMELINE]
    messages = [e for e in timeline if e["event"] == "newResult"]
    closes = [e for e in timeline if e["event"] == "caseClosed"]
    first_message = messages[0] if messages else None
    last_close = closes[-1] if closes else None
    person = next((e["personId"] for e in timeline if e["personId"] is not None), None)
    return {
        "caseId": case_id,
        "personId": person,
        "canonicalPersonId": canonical(person),
        "messages": len(messages),
        "customerMessages": sum(m["own"] == CUSTOMER for m in messages),
        "agentMessages": sum(m["own"] == AGENT for m in messages),
        "firstMessageAt": iso_time(first_message["timestamp"]) if first_message else None,
        "firstResponseSeconds": _first_response_seconds(messages),
        "closedAt": iso_time(last_close["timestamp"]) if last_close else None,
        "secondsToClose": _seconds_to_close(first_message, last_close),
        "closed": bool(timeline) and timeline[-1]["event"] == "caseClosed",
        "reopened": _reopened(timeline),
    }


def _seconds_to_close(first_message: dict | None, last_close: dict | None) -> int | None:
    """From the first message to the last close; None when no close comes after a message
    (a close stamped before the first message says nothing about how long the case took)."""
    if not first_message or not last_close:
        return None
    seconds = last_close["timestamp"] - first_message["timestamp"]
    return seconds if seconds >= 0 else None


def _first_response_seconds(messages: list[dict]) -> int | None:
    """Seconds from the first customer message to the first agent message after it."""
    first_customer = next((i for i, m in enumerate(messages) if m["own"] == CUSTOMER), None)
    if first_customer is None:
        return None
    asked = messages[first_customer]["timestamp"]
    answer = next((m for m in messages[first_customer + 1 :] if m["own"] == AGENT), None)
    return answer["timestamp"] - asked if answer else None


def _reopened(timeline: list[dict]) -> bool:
    first_close = next((i for i, e in enumerate(timeline) if e["event"] == "caseClosed"), None)
    if first_close is None:
        return False
    return any(e["event"] == "newResult" for e in timeline[first_close + 1 :])


def summarize_all(
    rows: Iterable[dict], canonical: Callable[[int | None], int | None]
) -> Iterator[dict[str, Any]]:
    """One summary per case, from rows ordered by caseId, timestamp, id (streamed). A caseId
    seen only on undocumented events has no messages and no close: it is not listed as a case."""
    for case_id, events in groupby(rows, key=lambda row: row["caseId"]):
        timeline = list(events)
        if any(e["event"] in TIMELINE for e in timeline):
            yield summarize(case_id, timeline, canonical)
