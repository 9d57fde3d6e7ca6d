"""`tbhook queue` and `report --sla`, on small logs whose answers are worked out by hand beside
each one (times in Europe/Amsterdam unless they say UTC), on SQLite and on PostgreSQL; the
waits every write keeps against a recount from the events."""

import json
import time

import pytest
from test_report import OFFICE, agent, at, close, customer, utc
from typer.testing import CliRunner

from tbhook import questions
from tbhook.cli import app
from tbhook.model.events import parse
from tbhook.model.hours import Clock, ClosedDays, parse_hours
from tbhook.model.queue import Sla, Standing, Waiting, changes, parse_sla, record
from tbhook.store import Delivery, open_reader, open_store

runner = CliRunner(env={"COLUMNS": "200"})
AMS = ("--tz", "Europe/Amsterdam")


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "queue.db")
    return request.getfixturevalue("pg_url")


def store_log(target, events):
    """Each event (or (event, path)) in its own transaction, as a receiver stores them."""
    store = open_store(target)
    try:
        for item in events:
            event, path = item if isinstance(item, tuple) else (item, "/")
            body = json.dumps(event).encode()
            store.append([Delivery(body, parse(body), path=path)])
    finally:
        store.close()
    return target


def queue(*args, db):
    result = runner.invoke(app, ["queue", *args, "--db", str(db)])
    assert result.exit_code == 0, result.output
    return result


def rows(*args, db):
    return [json.loads(line) for line in queue(*args, "-f", "ndjson", db=db).stdout.splitlines()]


def waits(*args, db):
    return {row["caseId"]: row for row in rows("-n", "0", *args, db=db)}


MON = (2024, 5, 13)  # a Monday; Ascension Day (Thursday 9 May) is a public holiday in NL
NOW = at(*MON, 11, 0)
ASK = ("--at", "2024-05-13T11:00", *AMS)


def merge(old, new, ts):
    return {"event": "profileMerged", "oldPersonId": old, "newPersonId": new, "timestamp": ts}


QUEUE = [
    # 6001: Wednesday 16:30, over Ascension Day and a weekend. Wall-clock to Monday 11:00:
    # 4d18h30m; in office hours: Wed 30m + Thu 0 (closed) + Fri 8h + Mon 2h = 10h30m.
    customer(6001, at(2024, 5, 8, 16, 30)),
    # 6002: answered on Monday, asked again at 10:20 and 10:30: a reply wait of 2 messages.
    customer(6002, at(*MON, 9, 0)),
    agent(6002, at(*MON, 9, 10)),
    customer(6002, at(*MON, 10, 20)),
    customer(6002, at(*MON, 10, 30)),
    # 6003: 10:10, 50 minutes before 11:00: 10 minutes of a 1h target left, at risk.
    customer(6003, at(*MON, 10, 10)),
    # 6004: 10:00; an agent's system message answers nothing, a customer's counts no message.
    customer(6004, at(*MON, 10, 0)),
    agent(6004, at(*MON, 10, 5), type_id=6),
    customer(6004, at(*MON, 10, 6), type_id=6),
    # 6005: only a customer's system message: nobody waits.
    customer(6005, at(*MON, 10, 0), type_id=6),
    # 6006: asked, closed without a reply, asked again at 10:40: waits from 10:40, still
    # for a first reply.
    customer(6006, at(*MON, 9, 30)),
    close(6006, at(*MON, 9, 45)),
    customer(6006, at(*MON, 10, 40)),
    # 6007: answered and closed, asked again at 10:45: a reply wait.
    customer(6007, at(*MON, 9, 0)),
    agent(6007, at(*MON, 9, 5)),
    close(6007, at(*MON, 9, 10)),
    customer(6007, at(*MON, 10, 45)),
    # 6008: person 10 waits at 10:50, merged into 20 at 10:55.
    customer(6008, at(*MON, 10, 50), person=10),
    merge(10, 20, at(*MON, 10, 55)),
    # 6009: one wait on two sources: 14 at 10:15 (path /a), then 3 at 10:35 (path /b).
    (customer(6009, at(*MON, 10, 15), source=14), "/a"),
    (customer(6009, at(*MON, 10, 35), source=3), "/b"),
    # 6010: answered: nobody waits.
    customer(6010, at(*MON, 9, 0)),
    agent(6010, at(*MON, 9, 1)),
]


def test_who_waits_for_how_long_oldest_first(target):
    store_log(target, QUEUE)
    found = rows("-n", "0", *ASK, db=target)
    assert [row["caseId"] for row in found] == [6001, 6004, 6003, 6009, 6002, 6006, 6007, 6008]
    by_case = {row["caseId"]: row for row in found}
    assert by_case[6001] == {
        "caseId": 6001,
        "personId": 6001,
        "sourceId": 14,
        "path": "/",
        "kind": "first",
        "waitingSince": "2024-05-08T14:30:00Z",
        "waitingSeconds": 4 * 86400 + 18 * 3600 + 1800,
        "messages": 1,
    }
    assert (by_case[6002]["kind"], by_case[6002]["messages"]) == ("reply", 2)
    assert by_case[6002]["waitingSeconds"] == 40 * 60  # from 10:20, not 10:30
    # A system message neither answers a wait nor is a message of it.
    assert (by_case[6004]["waitingSince"], by_case[6004]["messages"]) == ("2024-05-13T08:00:00Z", 1)
    # A close ends a wait; the message after it begins another, counted from itself.
    assert by_case[6006]["waitingSince"] == "2024-05-13T08:40:00Z"
    assert (by_case[6006]["kind"], by_case[6006]["messages"]) == ("first", 1)
    assert (by_case[6007]["kind"], by_case[6007]["waitingSeconds"]) == ("reply", 15 * 60)
    assert by_case[6008]["personId"] == 20  # the person now, after the merge
    # Two sources: the latest customer message's, with its path; the wait from the first.
    assert {k: by_case[6009][k] for k in ("sourceId", "path", "messages", "waitingSince")} == {
        "sourceId": 3,
        "path": "/b",
        "messages": 2,
        "waitingSince": "2024-05-13T08:15:00Z",
    }


def test_business_hours_leave_out_nights_weekends_and_holidays(target):
    store_log(target, QUEUE)
    office = waits(*ASK, "--hours", OFFICE, "--holidays", "NL", db=target)
    assert office[6001]["waitingSeconds"] == 10 * 3600 + 1800
    assert office[6003]["waitingSeconds"] == 50 * 60  # all of it in office hours
    without = waits(*ASK, "--hours", OFFICE, db=target)  # Ascension Day counts: + 8h
    assert without[6001]["waitingSeconds"] == 18 * 3600 + 1800


def test_targets_breached_at_risk_and_the_line_under_the_table(target):
    store_log(target, QUEUE)
    sla = ("--sla", "first=1h,reply=4h")
    found = waits(*ASK, *sla, db=target)
    assert found[6001]["slaLeftSeconds"] == 3600 - (4 * 86400 + 18 * 3600 + 1800)
    assert (found[6001]["slaSeconds"], found[6001]["breached"]) == (3600, True)
    # Exactly at its target: nothing left, not breached (negative only once breached).
    assert (found[6004]["slaLeftSeconds"], found[6004]["breached"]) == (0, False)
    assert (found[6002]["slaSeconds"], found[6002]["slaLeftSeconds"]) == (4 * 3600, 200 * 60)
    # 6001 breached; 6004 (0 left) and 6003 (10m left of 1h) at risk; 6009 has 15m left,
    # exactly a quarter: not less than a quarter, not at risk.
    table = queue(*ASK, *sla, db=target).stdout
    assert table.splitlines()[-1] == (
        "8 waiting, 1 breached, 2 at risk; the oldest has waited 4d19h"  # 4d18h30m, rounded
    )
    assert "waiting at 2024-05-13 11:00:00 CEST" in table
    office = queue(*ASK, *sla, "--hours", OFFICE, "--holidays", "NL", "-n", "2", db=target)
    lines = office.stdout.splitlines()
    assert lines[-2] == "8 waiting, 1 breached, 2 at risk; the oldest has waited 10h30m"
    assert lines[-1] == "2 of 8 shown; -n 0 for all"
    assert queue(*ASK, db=target).stdout.splitlines()[-1] == (
        "8 waiting; the oldest has waited 4d19h"
    )


def test_the_queue_at_a_moment_before_later_events(target):
    """--at before some events: each case as it stood then, counted again from its events."""
    store_log(target, QUEUE)
    then = waits("--at", "2024-05-13T09:40", *AMS, db=target)
    assert then[6006]["waitingSince"] == "2024-05-13T07:30:00Z"  # before its close
    assert 6002 not in then and 6007 not in then  # answered by then
    assert set(then) == {6001, 6006}
    between = waits("--at", "2024-05-13T10:00", *AMS, db=target)
    assert 6006 not in between  # closed at 09:45, asked again at 10:40
    assert 6004 in between and between[6004]["waitingSeconds"] == 0
    assert waits("--at", "2024-05-08T16:29", *AMS, db=target) == {}


def test_filters_by_the_source_and_path_a_case_waits_on(target):
    store_log(target, QUEUE)
    assert 6009 not in waits(*ASK, "--source", "14", db=target)
    assert set(waits(*ASK, "--source", "3", db=target)) == {6009}
    assert 6009 in waits(*ASK, "--source", "14", "--source", "3", db=target)
    assert set(waits(*ASK, "--path", "/b", db=target)) == {6009}
    assert waits(*ASK, "--path", "/a", db=target) == {}
    empty = queue(*ASK, "--path", "/a", db=target)
    assert empty.stdout == "nobody is waiting\n"


DST = [
    # Spring: Sunday 31 March 2024, 02:00 becomes 03:00: Sat 12:00 to Sun 12:00 is 23 hours,
    # and 01:00-04:00 that night is two.
    customer(7001, at(2024, 3, 30, 12, 0)),
    # Autumn: Sunday 27 October 2024, 03:00 becomes 02:00: 25 hours; 01:00-04:00 is four.
    customer(7002, at(2024, 10, 26, 12, 0)),
]


def test_both_daylight_saving_changes(target):
    store_log(target, DST)
    spring = ("--at", "2024-03-31T12:00", *AMS)
    assert waits(*spring, db=target)[7001]["waitingSeconds"] == 23 * 3600
    assert (
        waits(*spring, "--hours", "mon-sun 00:00-24:00", db=target)[7001]["waitingSeconds"]
        == 23 * 3600
    )
    assert (
        waits(*spring, "--hours", "mon-sun 01:00-04:00", db=target)[7001]["waitingSeconds"]
        == 2 * 3600
    )  # Saturday's hours were before the wait; Sunday's 01:00 CET-04:00 CEST
    autumn = ("--at", "2024-10-27T12:00", *AMS)
    assert waits(*autumn, db=target)[7002]["waitingSeconds"] == 25 * 3600
    assert (
        waits(*autumn, "--hours", "mon-sun 01:00-04:00", db=target)[7002]["waitingSeconds"]
        == 4 * 3600
    )


def test_without_at_the_queue_is_now(tmp_path):
    db = str(tmp_path / "now.db")
    since = int(time.time()) - 3600
    store_log(db, [customer(8001, since)])
    before = int(time.time())
    (row,) = rows(db=db)
    after = int(time.time())
    assert before - since <= row["waitingSeconds"] <= after - since


def test_the_kept_waits_answer_as_a_recount_does(target):
    """The waits every write keeps (with counts in SQL) against the waits counted again from
    the events: the same rows and the same line, whatever the moment, clock, SLA or filter."""
    store_log(target, QUEUE + DST)
    zone = __import__("zoneinfo").ZoneInfo("Europe/Amsterdam")
    closed = ClosedDays()
    closed.add("NL")
    clocks = [None, Clock(parse_hours(OFFICE), zone, closed)]
    store = open_reader(target)
    try:
        for moment in (NOW, NOW + 86400 * 400, utc(2024, 10, 27, 0, 0)):
            for clock in clocks:
                for sla in (None, Sla(3600, 4 * 3600), Sla(reply=60)):
                    for waiting in (Waiting(at=moment), Waiting((3, 14), at=moment)):
                        for limit in (None, 2):
                            kept = questions.queue(
                                store, waiting, limit, now=0, clock=clock, sla=sla
                            )
                            again = questions.queue(
                                store, waiting, limit, now=0, clock=clock, sla=sla, kept=False
                            )
                            assert (kept.records, kept.standing) == (again.records, again.standing)
        assert kept.standing.waiting > 3 and kept.standing.breached > 0
    finally:
        store.close()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--sla", "first=4x"], "'4x' is not a duration"),
        (["--sla", "first=1h,fast=2h"], "'fast' is not a kind of wait"),
        (["--sla", "first"], "'first' is not kind=duration"),
        (["--sla", "first=1h,first=2h"], "'first' is given twice"),
        (["--at", "yesterday"], "'yesterday' is not a date"),
        (["--holidays", "NL"], "closed days need open hours"),
        (["--hours", "mon 9-17"], "'9' is not a time of day"),
        (["--source", str(2**63)], "does not fit in a 64-bit integer"),
    ],
)
def test_mistakes_are_usage_errors_that_name_the_part(tmp_path, args, words):
    db = store_log(str(tmp_path / "m.db"), QUEUE[:1])
    result = runner.invoke(app, ["queue", *args, "--db", db])
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert "Traceback" not in result.output


def test_changes_between_two_answers():
    """The seam a live queue follows: a wait begun, crossed its target, changed, left."""
    sla = parse_sla("first=1h")

    def row(case, since, now, messages=1):
        wait = (case, since, "first", messages, 14, "/", case)
        return record(wait, lambda person: person, lambda start, end: end - start, now, sla)

    before = [row(1, 0, 3000), row(2, 100, 3000), row(3, 200, 3000)]
    after = [row(1, 0, 3700), row(2, 100, 3700, messages=2), row(4, 3650, 3700)]
    assert [(c["change"], c["caseId"]) for c in changes(before, after)] == [
        ("breached", 1),
        ("updated", 2),
        ("waiting", 4),
        ("left", 3),
    ]
    assert changes(after, after) == []
    # Answered and waiting again between two answers: the old wait left, a new one began.
    again = [row(1, 3690, 3700)]
    assert [c["change"] for c in changes(after[:1], again)] == ["waiting", "left"]
    # 2 has waited exactly its hour: 0 left, at risk, not breached.
    assert Standing.of(after) == Standing(3, 1, 1, 3700)


# -- report --sla ---------------------------------------------------------------------------

REPORTED = [
    # First replies: 30 minutes (within 1h), 2 hours (not); then later replies: 10 minutes,
    # 5 hours (not within 4h), 3 hours.
    customer(9001, at(2024, 6, 3, 10, 0)),
    agent(9001, at(2024, 6, 3, 10, 30)),
    customer(9001, at(2024, 6, 3, 11, 0)),
    agent(9001, at(2024, 6, 3, 11, 10)),
    customer(9001, at(2024, 6, 3, 12, 0)),
    agent(9001, at(2024, 6, 3, 17, 0)),
    customer(9002, at(2024, 6, 4, 9, 0)),
    agent(9002, at(2024, 6, 4, 11, 0)),
    customer(9002, at(2024, 6, 4, 12, 0)),
    agent(9002, at(2024, 6, 4, 15, 0)),
    # Friday 16:30 to Monday 09:20: 2d16h50m on the wall, 50 minutes in office hours.
    customer(9003, at(2024, 6, 7, 16, 30)),
    agent(9003, at(2024, 6, 10, 9, 20)),
]


def test_report_sla_shares_of_first_replies_and_later_replies(target):
    store_log(target, REPORTED)
    sla = ("--sla", "first=1h,reply=4h", *AMS)
    result = runner.invoke(app, ["report", "--by", "week", *sla, "-f", "ndjson", "--db", target])
    assert result.exit_code == 0, result.output
    weeks = {json.loads(line)["period"]: json.loads(line) for line in result.stdout.splitlines()}
    assert (weeks["2024-W23"]["firstWithinSla"], weeks["2024-W23"]["repliesWithinSla"]) == (
        0.333,  # 30m of 30m, 2h, 2d16h50m
        0.667,  # 10m and 3h of 10m, 5h, 3h
    )
    assert weeks["2024-W24"]["firstWithinSla"] is None  # no first reply began that week
    office = runner.invoke(
        app, ["report", "--by", "week", *sla, "--hours", OFFICE, "-f", "csv", "--db", target]
    )
    header, first = office.stdout.splitlines()[:2]
    assert header.endswith(",firstWithinSla,repliesWithinSla")
    assert first.startswith("2024-W23,") and first.endswith(",0.667,0.667")  # 50m is within
    only_first = runner.invoke(
        app, ["report", "--sla", "first=2h", *AMS, "-f", "json", "--by", "source", "--db", target]
    )
    source = json.loads(only_first.stdout)[0]  # 30m and 2h of 30m, 2h, 2d16h50m
    assert (source["source"], source["firstWithinSla"], source["repliesWithinSla"]) == (
        14,
        0.667,
        None,
    )
