"""The report from the kept tallies (per quarter-hour and source) and from the case summaries
are the same report, byte for byte in every format, for every grouping, zone, range, source
and SLA the tallies answer; and a report they cannot answer (business hours, another filter,
periods that are not whole quarter-hours) is counted from the summaries."""

import io
import json
import random
from datetime import timezone
from zoneinfo import ZoneInfo

import pytest
from test_timelines import stored as kept

from tbhook import questions
from tbhook.model import tallies
from tbhook.model.filters import Filters
from tbhook.model.periods import Periods
from tbhook.model.queue import Sla
from tbhook.output.formats import Answer, write
from tbhook.store import open_reader

START = 1_711_800_000  # 2024-03-30, a day before Europe's spring change
ZONES = [
    timezone.utc,
    ZoneInfo("Europe/Amsterdam"),
    ZoneInfo("Asia/Kathmandu"),  # +05:45
    ZoneInfo("America/St_Johns"),  # -03:30, and its own DST
    ZoneInfo("Australia/Lord_Howe"),  # a half-hour DST change
]
RANGES = [
    (None, None),
    (START + 3 * 86400 + 7, None),
    (None, START + 20 * 86400),
    (START + 5 * 86400 + 1234, START + 25 * 86400 + 99),
]


def random_log(seed: int, cases: int = 90) -> list[bytes]:
    """Cases of every shape: customers and agents in any order, system messages, closes
    and reopens (twice in one quarter-hour too), sources that change, delivered shuffled
    (late arrivals recount their cases)."""
    rng = random.Random(seed)
    events = []
    n = 0
    for case in range(1, cases + 1):
        moment = START + rng.randrange(0, 30 * 86400)
        source = rng.choice([3, 14, 22, None])
        for _ in range(rng.randint(1, 9)):
            moment += rng.choice([0, 30, 600, 3600, 20_000, 90_000, 400_000])
            n += 1
            roll = rng.random()
            if roll < 0.18:
                events.append(
                    {"event": "caseClosed", "caseId": case, "personId": case, "searchId": 1,
                     "agentId": rng.randrange(1, 4), "resultId": n, "timestamp": moment}
                )  # fmt: skip
                continue
            event = {
                "event": "newResult", "searchId": 1, "uniqueId": n, "resultId": n,
                "personId": case, "caseId": case, "handlerId": 0, "connectionId": 1,
                "typeId": 6 if rng.random() < 0.1 else 4, "own": 0 if roll < 0.6 else 1,
                "timestamp": moment,
            }  # fmt: skip
            chosen = source if rng.random() < 0.8 else rng.choice([3, 14, 22])
            if chosen is not None:
                event["sourceId"] = chosen
            events.append(event)
    rng.shuffle(events)
    return [json.dumps(event).encode() for event in events]


def stored(target: str, bodies: list[bytes]) -> str:
    kept(target, bodies)
    return target


def written(report, fmt: str) -> str:
    out = io.StringIO()
    write(Answer(records=[*report.rows, report.totals], fields=report.fields), fmt, out)
    return out.getvalue()


def both_ways(store, filters, by, zone, sla=None, clock=None):
    """The report from the tallies (where they answer) and from the summaries, written."""
    now = START + 40 * 86400
    fast = questions.report(store, filters, by, zone, clock, now, sla)
    slow = questions.report(store, filters, by, zone, clock, now, sla, tallied=False)
    return [(written(fast, fmt), written(slow, fmt)) for fmt in ("csv", "json")]


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "tallies.db")
    return request.getfixturevalue("pg_url")


def test_tallies_and_summaries_give_the_same_report(target):
    stored(target, random_log(5))
    store = open_reader(target)
    try:
        answered = 0
        for by in ("day", "week", "month", "source"):
            for zone in ZONES:
                for since, until in RANGES:
                    for source in (None, 14):
                        for sla in (None, Sla(3600, 7200)):
                            filters = Filters(since=since, until=until, source=source)
                            answered += tallies.answers(by, filters, None)
                            for fast, slow in both_ways(store, filters, by, zone, sla):
                                assert fast == slow, (by, zone, since, until, source, sla)
        assert answered == 4 * len(ZONES) * len(RANGES) * 4
        assert len(list(store.tallies.rows(START - 86400, START + 90 * 86400, None))) > 100
    finally:
        store.close()


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_more_shapes_give_the_same_report(tmp_path, seed):
    db = stored(str(tmp_path / "more.db"), random_log(seed, cases=150))
    store = open_reader(db)
    try:
        for by in ("day", "week", "source"):
            for zone in ZONES[:3]:
                for since, until in RANGES:
                    filters = Filters(since=since, until=until)
                    for fast, slow in both_ways(store, filters, by, zone, Sla(600, 1800)):
                        assert fast == slow, (by, zone, since, until)
    finally:
        store.close()


def test_what_the_tallies_cannot_answer_the_summaries_count(tmp_path):
    from tbhook.model.hours import Clock, parse_hours

    clock = Clock(parse_hours("mon-fri 09:00-17:00"), ZoneInfo("Europe/Amsterdam"))
    assert not tallies.answers("day", Filters(), clock)
    assert not tallies.answers("agent", Filters(), None)
    assert not tallies.answers("week", Filters(person=10), None)
    assert not tallies.answers("week", Filters(path="/a"), None)
    assert tallies.answers("month", Filters(source=3, since=1, until=2), None)
    # Amsterdam's days in 1930 began at 00:19:32 UTC+: not whole quarter-hours.
    old = Periods.spanning(
        -1_262_304_000, -1_262_304_000 + 86400, "day", ZoneInfo("Europe/Amsterdam")
    )
    assert not tallies.aligned(old)
    assert tallies.aligned(
        Periods.spanning(START, START + 86400, "day", ZoneInfo("Asia/Kathmandu"))
    )
    message = json.loads(random_log(1, cases=1)[0])
    message.update(event="newResult", own=0, typeId=4, timestamp=-1_262_304_000 + 4000)
    message.update(uniqueId=1, resultId=1, sourceId=3, handlerId=0, connectionId=1, searchId=1)
    db = stored(str(tmp_path / "old.db"), [json.dumps(message).encode()])
    store = open_reader(db)
    try:
        for fast, slow in both_ways(store, Filters(), "day", ZoneInfo("Europe/Amsterdam")):
            assert fast == slow and "1930-01-01" in fast
        for fast, slow in both_ways(store, Filters(), "week", ZoneInfo("UTC"), clock=clock):
            assert fast == slow
    finally:
        store.close()
