"""`tbhook report` and the case metrics it shares with `cases`, on small logs whose answers
are worked out by hand below each one (times in Europe/Amsterdam unless they say UTC)."""

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.events import parse
from tbhook.store import Delivery, open_store

AMS = ZoneInfo("Europe/Amsterdam")
runner = CliRunner(env={"COLUMNS": "200"})
OFFICE = "mon-fri 09:00-17:00"


def at(*parts: int, zone=AMS) -> int:
    return int(datetime(*parts, tzinfo=zone).timestamp())


def utc(*parts: int) -> int:
    return at(*parts, zone=ZoneInfo("UTC"))


_unique = iter(range(1, 10**6))


def msg(case, own, ts, type_id=4, person=None, source=14, search=1):
    n = next(_unique)
    return {
        "event": "newResult",
        "searchId": search,
        "uniqueId": n,
        "resultId": n,
        "personId": person if person is not None else case,
        "caseId": case,
        "handlerId": 0,
        "sourceId": source,
        "connectionId": 111,
        "typeId": type_id,
        "own": own,
        "timestamp": ts,
    }


def close(case, ts, agent=7, person=None):
    return {
        "event": "caseClosed",
        "searchId": 1,
        "caseId": case,
        "externalCaseId": None,
        "reasonId": None,
        "personId": person if person is not None else case,
        "externalPersonId": False,
        "agentId": agent,
        "resultId": next(_unique),
        "connectionId": 111,
        "timestamp": ts,
    }


def customer(case, ts, **kw):
    return msg(case, 0, ts, **kw)


def agent(case, ts, **kw):
    return msg(case, 1, ts, **kw)


def store_log(target, events):
    store = open_store(target)
    try:
        for event in events:
            body = json.dumps(event).encode()
            store.append([Delivery(body, parse(body))])
    finally:
        store.close()
    return target


def run(*args, db):
    result = runner.invoke(app, [*args, "--db", str(db)])
    assert result.exit_code == 0, result.output
    return result


def rows(*args, db):
    """The rows of a command; a report's without its total row (tested on its own)."""
    extra = ("--no-total",) if args[0] == "report" else ()
    return [
        json.loads(line) for line in run(*args, *extra, "-f", "ndjson", db=db).stdout.splitlines()
    ]


def by_period(*args, db):
    return {row["period"]: row for row in rows("report", *args, db=db)}


def case_record(case_id, *args, db):
    (record,) = [r for r in rows("cases", "-n", "0", *args, db=db) if r["caseId"] == case_id]
    return record


# -- business hours ------------------------------------------------------------------------

WEEKEND = [
    # Friday 16:00 the customer writes; the agent answers Monday 10:00 and closes at 10:30.
    customer(1001, at(2024, 5, 3, 16, 0)),
    agent(1001, at(2024, 5, 6, 10, 0)),
    close(1001, at(2024, 5, 6, 10, 30)),
    # Wednesday 16:30 to Friday 09:30, over Thursday 9 May 2024: Ascension Day in NL.
    customer(1002, at(2024, 5, 8, 16, 30)),
    agent(1002, at(2024, 5, 10, 9, 30)),
]


def test_a_wait_across_a_weekend_counts_only_office_hours(db_path):
    store_log(db_path, WEEKEND)
    wall = case_record(1001, db=db_path)
    assert wall["firstResponseSeconds"] == 66 * 3600  # Fri 16:00 to Mon 10:00
    assert wall["resolutionSeconds"] == 66 * 3600 + 1800
    office = case_record(1001, "--hours", OFFICE, "--tz", "Europe/Amsterdam", db=db_path)
    # Fri 16:00-17:00 and Mon 09:00-10:00 (-10:30 for the resolution).
    assert office["firstResponseBusinessSeconds"] == 2 * 3600
    assert office["resolutionBusinessSeconds"] == 2 * 3600 + 1800
    assert office["firstResponseSeconds"] == 66 * 3600  # wall-clock still there

    weeks = by_period("--by", "week", "--hours", OFFICE, "--tz", "Europe/Amsterdam", db=db_path)
    assert list(weeks) == ["2024-W18", "2024-W19"]
    w18, w19 = weeks["2024-W18"], weeks["2024-W19"]
    assert (w18["newCases"], w18["firstResponseMedian"], w18["replies"], w18["replyMedian"]) == (
        1,
        7200,
        1,
        7200,
    )
    assert (w18["closedCases"], w18["openAtEnd"]) == (0, 1)
    # Week 19: 1001 closed (resolution in the week of its first close), 1002 opened and
    # answered: Wed 16:30-17:00, Thu 09:00-17:00, Fri 09:00-09:30 = 9 hours.
    assert (w19["closedCases"], w19["resolutionMedian"], w19["openAtEnd"]) == (1, 9000, 1)
    assert (w19["newCases"], w19["firstResponseMedian"]) == (1, 9 * 3600)


def test_holidays_close_whole_days_from_a_country_or_a_file(db_path, tmp_path):
    store_log(db_path, WEEKEND)
    nl = case_record(
        1002, "--hours", OFFICE, "--tz", "Europe/Amsterdam", "--holidays", "NL", db=db_path
    )
    assert nl["firstResponseBusinessSeconds"] == 3600  # Ascension Day is closed
    days = tmp_path / "closed.txt"
    days.write_text("# the team's own closed days\n2024-05-06\n\n")
    own = case_record(
        1001, "--hours", OFFICE, "--tz", "Europe/Amsterdam", "--holidays", str(days), db=db_path
    )
    assert own["firstResponseBusinessSeconds"] == 3600  # only Friday 16:00-17:00
    both = by_period(
        "--by", "week", "--hours", OFFICE, "--tz", "Europe/Amsterdam",
        "--holidays", "NL", "--holidays", str(days), db=db_path,
    )  # fmt: skip
    assert both["2024-W18"]["firstResponseMedian"] == 3600
    assert both["2024-W19"]["firstResponseMedian"] == 3600


# -- daylight saving ---------------------------------------------------------------------

DST = [
    # Spring: Sunday 31 March 2024, 02:00 becomes 03:00. Sat 12:00 to Sun 12:00 is 23 hours.
    customer(2001, at(2024, 3, 30, 12, 0)),
    agent(2001, at(2024, 3, 31, 12, 0)),
    # Autumn: Sunday 27 October 2024, 03:00 becomes 02:00: 25 hours.
    customer(2002, at(2024, 10, 26, 12, 0)),
    agent(2002, at(2024, 10, 27, 12, 0)),
    # 22:30 UTC on 31 March is 00:30 on 1 April in Amsterdam.
    customer(2003, utc(2024, 3, 31, 22, 30)),
]


def test_daylight_saving_changes_the_length_of_a_day_and_of_business_hours(db_path):
    store_log(db_path, DST)
    zone = ("--tz", "Europe/Amsterdam")
    assert case_record(2001, db=db_path)["firstResponseSeconds"] == 23 * 3600
    around = case_record(2001, "--hours", "mon-sun 00:00-24:00", *zone, db=db_path)
    assert around["firstResponseBusinessSeconds"] == 23 * 3600
    night = case_record(2001, "--hours", "mon-sun 01:00-04:00", *zone, db=db_path)
    assert night["firstResponseBusinessSeconds"] == 2 * 3600  # 01:00 CET to 04:00 CEST
    autumn = case_record(2002, "--hours", "mon-sun 01:00-04:00", *zone, db=db_path)
    assert autumn["firstResponseSeconds"] == 25 * 3600
    assert autumn["firstResponseBusinessSeconds"] == 4 * 3600  # 01:00 CEST to 04:00 CET


def test_days_are_days_in_the_zone_asked_for(db_path):
    store_log(db_path, DST)
    ams = by_period("--since", "2024-03-31", "--until", "2024-04-01", "--tz", "Europe/Amsterdam", db=db_path)  # fmt: skip
    assert {day: row["newCases"] for day, row in ams.items()} == {"2024-03-31": 0, "2024-04-01": 1}
    in_utc = by_period("--since", "2024-03-31", "--until", "2024-04-01", db=db_path)
    assert {day: row["newCases"] for day, row in in_utc.items()} == {
        "2024-03-31": 1,
        "2024-04-01": 0,
    }


# -- reopens, one touch, closes before the first message, system messages ------------------

T = utc(2024, 6, 3, 9, 0)  # a Monday

SHAPES = [
    # 3001: closed, reopened, closed, reopened, closed: two reopens, no agent message.
    customer(3001, T),
    close(3001, T + 60),
    customer(3001, T + 120),
    close(3001, T + 180, agent=8),
    customer(3001, T + 240),
    close(3001, T + 300),
    # 3002: one agent message, then closed: one touch.
    customer(3002, T),
    agent(3002, T + 30),
    close(3002, T + 90, agent=8),
    # 4001: a close stamped before its first message: ignored, the case is open.
    close(4001, T - 100),
    customer(4001, T),
    agent(4001, T + 50),
    # 5001: a customer's system message opens no wait.
    customer(5001, T, type_id=6),
    agent(5001, T + 10),
    # 5002: an agent's system message answers nothing; the agent's own reply does.
    customer(5002, T),
    agent(5002, T + 10, type_id=6),
    agent(5002, T + 100),
]


def test_reopens_one_touch_closes_before_the_first_message_and_system_messages(db_path):
    store_log(db_path, SHAPES)
    reopened = case_record(3001, db=db_path)
    assert (reopened["reopens"], reopened["reopened"], reopened["resolutionSeconds"]) == (
        2,
        True,
        60,
    )
    # One wait, never answered: the later messages came while it was open.
    assert (reopened["replies"], reopened["unanswered"], reopened["closedBy"]) == (0, 1, 7)
    early = case_record(4001, db=db_path)
    assert (early["firstClosedAt"], early["resolutionSeconds"], early["reopens"]) == (None, None, 0)
    assert (early["closed"], early["firstResponseSeconds"]) == (False, 50)
    system = case_record(5001, db=db_path)
    assert (system["firstResponseSeconds"], system["replies"], system["customerMessages"]) == (
        None,
        0,
        1,
    )
    answered = case_record(5002, db=db_path)
    assert (answered["firstResponseSeconds"], answered["agentMessages"]) == (100, 2)

    (day,) = rows("report", db=db_path)
    assert day["period"] == "2024-06-03"
    assert (day["newCases"], day["closedCases"], day["openAtEnd"]) == (5, 2, 3)
    assert (day["customerMessages"], day["agentMessages"]) == (7, 5)
    # Waits: 3001 one, unanswered; 3002 30 s; 4001 50 s; 5002 100 s (5001 none).
    assert (day["replies"], day["unanswered"]) == (3, 1)
    assert (day["replyMedian"], day["replyP90"]) == (50, 90)  # 30, 50, 100: p90 at rank 1.8
    assert (day["firstResponseMedian"], day["firstResponseP90"]) == (50, 90)
    # First closed today: 3001 (60 s, reopened, no touch) and 3002 (90 s, one touch).
    assert (day["resolutionMedian"], day["resolutionP90"]) == (75, 87)  # 60 + 0.9 * 30 = 87
    assert (day["reopenRate"], day["oneTouchRate"]) == (0.5, 0.5)

    agents = {row["agent"]: row for row in rows("report", "--by", "agent", db=db_path)}
    assert set(agents) == {7, 8}  # who closed each case first: 3001 by 7, 3002 by 8
    assert (agents[7]["closedCases"], agents[7]["reopenRate"]) == (1, 1.0)
    assert (agents[8]["closedCases"], agents[8]["oneTouchRate"]) == (1, 1.0)
    assert agents[7]["newCases"] is None and agents[7]["replies"] is None  # close-based only


def test_percentiles_interpolate_and_round_half_up(db_path):
    day = utc(2024, 7, 1, 8, 0)
    events = []
    for case, wait in ((6001, 10), (6002, 20), (6003, 30), (6004, 40)):
        events += [customer(case, day), agent(case, day + wait)]
    # The next day: two waits of 1 and 2 seconds; the median 1.5 rounds up to 2.
    events += [customer(6005, day + 86400), agent(6005, day + 86401)]
    events += [customer(6006, day + 86400), agent(6006, day + 86402)]
    store_log(db_path, events)
    days = by_period(db=db_path)
    assert (days["2024-07-01"]["replyMedian"], days["2024-07-01"]["replyP90"]) == (25, 37)
    assert (days["2024-07-02"]["replyMedian"], days["2024-07-02"]["replyP90"]) == (2, 2)
    written = json.loads(run("report", "-f", "json", db=db_path).stdout)
    assert [row["period"] for row in written] == ["2024-07-01", "2024-07-02", "total"]
    # The whole range's median and p90 (of 1, 2, 10, 20, 30, 40): not from the rows above.
    assert (written[-1]["replyMedian"], written[-1]["replyP90"], written[-1]["newCases"]) == (
        15,
        35,
        6,
    )


def test_csv_json_and_ndjson_end_with_the_total_row_the_table_shows_unless_no_total(db_path):
    store_log(db_path, WEEKEND)
    table = run("report", db=db_path).stdout
    [table_total] = [line.split() for line in table.splitlines() if line.startswith("total")]
    csv_lines = run("report", "-f", "csv", db=db_path).stdout.splitlines()
    ndjson = [
        json.loads(line) for line in run("report", "-f", "ndjson", db=db_path).stdout.splitlines()
    ]
    assert csv_lines[-1].split(",")[:3] == ["total", *table_total[1:3]]
    assert (
        ndjson[-1]["period"] == "total"
        and ndjson[-1] == json.loads(run("report", "-f", "json", db=db_path).stdout)[-1]
    )
    assert [row["period"] for row in ndjson[:-1]] == [
        row["period"] for row in rows("report", db=db_path)
    ]
    for fmt in ("csv", "json", "ndjson", "table"):
        assert "total" not in run("report", "--no-total", "-f", fmt, db=db_path).stdout, fmt
    by_source = run("report", "--by", "source", "-f", "ndjson", db=db_path).stdout.splitlines()
    assert json.loads(by_source[-1])["source"] == "total"


# -- the range -----------------------------------------------------------------------------


def test_empty_periods_have_rows_and_backlog_carries_over_since(db_path):
    events = [
        customer(7001, utc(2024, 8, 1, 10)),  # before --since, still open
        customer(7002, utc(2024, 8, 1, 11)),  # before --since, closed before it
        close(7002, utc(2024, 8, 2, 11)),
        customer(7003, utc(2024, 8, 6, 9)),  # in range, closed two days later
        close(7003, utc(2024, 8, 8, 9)),
    ]
    store_log(db_path, events)
    days = by_period("--since", "2024-08-05", "--until", "2024-08-09", db=db_path)
    assert list(days) == ["2024-08-05", "2024-08-06", "2024-08-07", "2024-08-08", "2024-08-09"]
    assert [row["openAtEnd"] for row in days.values()] == [1, 2, 2, 1, 1]
    assert [row["newCases"] for row in days.values()] == [0, 1, 0, 0, 0]
    assert days["2024-08-08"]["resolutionMedian"] == 2 * 86400
    table = run("report", "--since", "2024-08-05", "--until", "2024-08-09", db=db_path).stdout
    assert "2024-08-07" in table and "total" in table
    total_line = [line for line in table.splitlines() if line.startswith("total")][0]
    assert total_line.split()[1:4] == ["1", "1", "1"]  # new, closed, open at the end


def test_merged_persons_are_one_person_to_a_report(db_path):
    events = [
        customer(8001, utc(2024, 9, 2, 9), person=61),
        customer(8002, utc(2024, 9, 3, 9), person=62),
        {
            "event": "profileMerged",
            "oldPersonId": 61,
            "newPersonId": 62,
            "timestamp": utc(2024, 9, 4),
        },
        customer(8003, utc(2024, 9, 3, 9), person=63),
    ]
    store_log(db_path, events)
    for person in ("61", "62"):
        (month,) = rows("report", "--by", "month", "--person", person, db=db_path)
        assert month["newCases"] == 2
    (other,) = rows("report", "--by", "month", "--person", "63", db=db_path)
    assert other["newCases"] == 1


def test_by_source_groups_cases_by_their_first_message(db_path):
    events = [
        customer(9001, T, source=3),
        agent(9001, T + 5, source=14),  # a later message elsewhere does not move the case
        customer(9002, T, source=14),
        customer(9003, T, source=14),
    ]
    store_log(db_path, events)
    sources = {row["source"]: row for row in rows("report", "--by", "source", db=db_path)}
    assert {key: row["newCases"] for key, row in sources.items()} == {3: 1, 14: 2}
    assert sources[3]["agentMessages"] == 1 and sources[3]["firstResponseMedian"] == 5
    only = rows("report", "--source", "3", db=db_path)
    assert [row["newCases"] for row in only] == [1]


# -- mistakes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (["--hours", "mon-fry 09:00-17:00"], "'fry' is not a day"),
        (["--hours", "mon 9-17"], "'9' is not a time of day"),
        (["--hours", "mon 17:00-09:00"], "ends before it starts"),
        (["--hours", "09:00-17:00"], "names no days"),
        (["--hours", OFFICE, "--holidays", "XX"], "'XX' is not a country code"),
        (["--hours", OFFICE, "--holidays", "closed.txt"], "'closed.txt' is no file (and no"),
        (["--holidays", "NL"], "closed days need open hours"),
        (["--event", "newResult"], "a report counts whole cases"),
        (["--sender", "agent"], "a report counts whole cases"),
        (["--by", "year"], "'year' is not one of"),
        (["--since", "1970-01-01"], "is more than 10,000 days"),
    ],
)
def test_mistakes_are_usage_errors_that_name_the_part(db_path, args, words):
    store_log(db_path, WEEKEND)
    result = runner.invoke(app, ["report", *args, "--db", str(db_path)])
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert "Traceback" not in result.output


def test_a_bad_line_in_a_holidays_file_is_named(db_path, tmp_path):
    store_log(db_path, WEEKEND)
    days = tmp_path / "closed.txt"
    days.write_text("2024-05-06\n6 May\n")
    result = runner.invoke(
        app, ["report", "--hours", OFFICE, "--holidays", str(days), "--db", str(db_path)]
    )
    assert result.exit_code == 2
    assert "line 2: '6 May' is not a date" in result.output


def test_an_empty_log_reports_nothing_and_says_so(db_path):
    store_log(db_path, [])
    result = runner.invoke(app, ["report", "--db", str(db_path)])
    assert result.exit_code == 0
    assert "no cases" in result.output
    assert run("report", "-f", "csv", db=db_path).stdout.startswith("period,newCases,")


# -- an event far outside the rest ---------------------------------------------------------

YEAR_9999 = 253402300799  # 9999-12-31T23:59:59Z, as one stored event was stamped


def test_an_event_far_outside_the_rest_does_not_break_a_report(db_path):
    store_log(db_path, [*WEEKEND, customer(1003, YEAR_9999, source=3)])
    ids = {row["caseId"]: row["id"] for row in rows("events", "-n", "0", db=db_path)}
    sources = {row["source"]: row for row in rows("report", "--by", "source", db=db_path)}
    assert {key: row["newCases"] for key, row in sources.items()} == {3: 1, 14: 2}
    agents = rows("report", "--by", "agent", db=db_path)
    assert [(row["agent"], row["closedCases"]) for row in agents] == [(7, 1)]
    for by, first in (("day", "2024-05-03"), ("week", "2024-W18"), ("month", "2024-05")):
        result = runner.invoke(app, ["report", "--by", by, "--db", str(db_path)])
        assert result.exit_code == 2, result.output
        last = {"day": "9999-12-31", "week": "9999-W52", "month": "9999-12"}[by]
        words = (
            f"from {first} to {last} is more than 10,000 {by}s, stretched by event "
            f"#{ids[1003]} at 9999-12-31T23:59:59Z, far from the others; try "
        )
        assert words in " ".join(result.stderr.split()), result.stderr
        advice = " ".join(result.stderr.split()).split("; try ")[1].split()
        assert advice == ["--since", "2024-05-03", "--until", "2024-05-10"]
        followed = by_period("--by", by, *advice, db=db_path)  # the advice works
        assert sum(row["newCases"] for row in followed.values()) == 2


def test_a_range_too_long_for_its_data_is_advised_down_to_the_data(db_path):
    store_log(db_path, WEEKEND)
    result = runner.invoke(
        app, ["report", "--since", "0001-01-01", "--until", "9999-12-31", "--db", str(db_path)]
    )
    assert result.exit_code == 2
    said = " ".join(result.stderr.split())
    assert "from 0001-01-01 to 9999-12-31 is more than 10,000 days; try --since 2024-05-03 " in said
    whole = rows("report", "--by", "source", "--since", "0001-01-01", "--until", "9999-12-31",
                 db=db_path)  # fmt: skip
    assert [row["newCases"] for row in whole] == [2]


def test_a_report_by_day_asked_for_no_range_shows_at_most_the_last_30_days_of_cases(db_path):
    """Two cases 90 days apart: by day, the 30 days up to the last case (not 91 rows, mostly
    empty); by week all of them; --since brings the first back."""
    store_log(db_path, [customer(1, utc(2024, 3, 1, 10)), customer(2, utc(2024, 5, 30, 10))])
    days = list(by_period(db=db_path))
    assert (len(days), days[0], days[-1]) == (30, "2024-05-01", "2024-05-30")
    weeks = by_period("--by", "week", db=db_path)
    assert sum(row["newCases"] for row in weeks.values()) == 2
    assert len(by_period("--since", "2024-03-01", "--until", "2024-05-30", db=db_path)) == 91


@pytest.mark.parametrize(
    "seconds, shown",
    [(119, "119s"), (3419, "57m"), (3389, "56m"), (7169, "119m"), (7170, "2h00m"),
     (119460, "33h11m"), (172769, "47h59m"), (172770, "2d00h"), (187200, "2d04h"),
     (410400, "4d18h"), (412200, "4d19h"), (-3419, "-57m")],
)  # fmt: skip
def test_a_duration_is_rounded_to_the_last_unit_it_shows(seconds, shown):
    from tbhook.model.times import duration

    assert duration(seconds) == shown


def test_case_shows_each_duration_as_every_table_does_with_its_seconds(db_path):
    store_log(db_path, [customer(9001, utc(2024, 5, 1, 9)), agent(9001, utc(2024, 5, 1, 9) + 3419)])
    shown = run("case", "9001", db=db_path).stdout
    assert "57m (3419 s)" in shown  # cut, not rounded, it was 56m; the page says the same
