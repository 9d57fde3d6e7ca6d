"""Case timelines and their metrics, from a case's events in time order. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

from tbhook.filters import iso_time

CUSTOMER, AGENT = 0, 1

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


# What a case's metrics need of each event, in this order: the rows ``Store.case_events``
# gives, and what ``summarize`` reads.
CASE_COLUMNS = ("caseId", "event", "timestamp", "personId", "own")


def summarize(
    case_id: int, events: Iterable[Sequence[Any]], canonical: Callable[[int | None], int | None]
) -> dict[str, Any]:
    """The metrics of one case, in one pass over its events ordered by timestamp, id (each a
    row of CASE_COLUMNS).

    ``firstResponseSeconds`` runs from the first customer message to the first agent message
    after it; ``secondsToClose`` from the first message to the last close (None when that
    close is stamped before the message); ``closed``: the latest event is a close;
    ``reopened``: a message came after a close. Events that are neither messages nor closes
    are not part of a case's timeline."""
    messages = customers = agents = 0
    person = first_message = first_customer = answered = last_close = last = None
    reopened = False
    for _case, event, timestamp, person_id, own in events:
        if event == "newResult":
            messages += 1
            if first_message is None:
                first_message = timestamp
            if own == CUSTOMER:
                customers += 1
                if first_customer is None:
                    first_customer = timestamp
            elif own == AGENT:
                agents += 1
                if first_customer is not None and answered is None:
                    answered = timestamp
            reopened = reopened or last_close is not None
        elif event == "caseClosed":
            last_close = timestamp
        else:
            continue
        if person is None:
            person = person_id
        last = event
    seconds_to_close = None
    if first_message is not None and last_close is not None and last_close >= first_message:
        seconds_to_close = last_close - first_message
    return {
        "caseId": case_id,
        "personId": person,
        "canonicalPersonId": canonical(person),
        "messages": messages,
        "customerMessages": customers,
        "agentMessages": agents,
        "firstMessageAt": iso_time(first_message),
        "firstResponseSeconds": answered - first_customer if answered is not None else None,
        "closedAt": iso_time(last_close),
        "secondsToClose": seconds_to_close,
        "closed": last == "caseClosed",
        "reopened": reopened,
    }


def summarize_all(
    rows: Iterable[Sequence[Any]], canonical: Callable[[int | None], int | None]
) -> Iterator[dict[str, Any]]:
    """One summary per case, from rows of CASE_COLUMNS ordered by caseId, timestamp, id
    (streamed). A caseId seen only on undocumented events has no messages and no close: it
    is not listed as a case."""
    for case_id, events in groupby(rows, key=itemgetter(0)):
        summary = summarize(case_id, events, canonical)
        if summary["messages"] or summary["closedAt"] is not None:
            yield summary
