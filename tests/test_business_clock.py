"""The business clock (``--hours``) counts a span of years by its years, not by its days: the
same seconds as counting day by day, in zones with daylight saving and with holidays; right
to the end of the year 9999, in little memory; a spec of more ranges a day than any team
has is refused in words, the same on both faces."""

from __future__ import annotations

import json
import random
import tracemalloc
from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from test_queue import ASK, QUEUE, store_log
from test_queue_page import console_on  # noqa: F401 - the fixture, shared
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.hours import RANGES, Clock, ClosedDays, country, parse_hours
from tbhook.model.times import parse_when

runner = CliRunner(env={"COLUMNS": "200"})
SPECS = (
    "mon-fri 09:00-17:30",
    "mon-sun 00:00-24:00",
    "mon-sun 01:00-04:00",  # across both daylight-saving changes of Europe
    "mon-fri 08:30-12:00,13:00-17:30; sat 10:00-14:00",
    "sun 00:00-00:30,02:15-03:10,22:00-24:00; mon 00:00-00:30",  # Sao Paulo's midnight changes
)
ZONES = ("UTC", "Europe/Amsterdam", "America/Sao_Paulo", "Australia/Lord_Howe")


def day_by_day(spec: str, zone, closed: ClosedDays, start: int, end: int) -> int:
    """The open seconds from start to end, each local date's ranges placed and clipped."""
    hours = parse_hours(spec)
    day = datetime.fromtimestamp(start, zone).date()
    last = datetime.fromtimestamp(end, zone).date()
    total = 0
    while day <= last:
        if day not in closed:
            seen = None
            for opens, closes in hours.week[day.weekday()]:
                a, b = (placed(day, seconds, zone) for seconds in (opens, closes))
                a = max(a, placed(day, 0, zone), seen if seen is not None else a)
                b = min(b, placed(day, 86400, zone))
                if b > a:
                    total += max(0, min(b, end) - max(a, start))
                    seen = b
        day += timedelta(days=1)
    return total


def placed(day: date, seconds: int, zone) -> int:
    day += timedelta(days=seconds // 86400)
    hour, rest = divmod(seconds % 86400, 3600)
    return int(datetime(day.year, day.month, day.day, hour, rest // 60, tzinfo=zone).timestamp())


@pytest.mark.parametrize("name", ZONES)
def test_spans_of_years_count_as_day_by_day_counting_does(name):
    zone = ZoneInfo(name)
    rng = random.Random(name)  # the same spans every run, other spans in every zone
    for spec in SPECS:
        closed = ClosedDays({date(2019, 2, 17), date(2024, 3, 31)})
        closed.calendars.append(country("NL"))
        clock = Clock(parse_hours(spec), zone, closed)
        for _ in range(25):
            start = rng.randint(parse_when("2010-01-01"), parse_when("2030-01-01"))
            end = start + rng.choice((3600, 86400, 9 * 86400, 400 * 86400, 1100 * 86400))
            end -= rng.randint(0, 3600)
            assert clock.between(start, end) == day_by_day(spec, zone, closed, start, end), (
                spec,
                start,
                end,
            )


def weekdays(first: date, last: date) -> int:
    """Mondays to Fridays from first to last, both included, counted one by one."""
    return sum(1 for n in range(first.toordinal(), last.toordinal() + 1) if (n - 1) % 7 < 5)


def test_business_seconds_grow_to_the_end_of_the_year_9999():
    start = parse_when("2026-01-05")  # a Monday
    always = Clock(parse_hours("mon-sun 00:00-24:00"))
    for end in ("2150-01-01", "2500-06-01", "9999-12-31"):
        assert always.between(start, parse_when(end)) == parse_when(end) - start
    office = Clock(parse_hours("mon-fri 09:00-17:30"))
    late = office.between(start, parse_when("9999-12-31"))
    assert late == weekdays(date(2026, 1, 5), date(9999, 12, 30)) * 30600
    assert office.between(start, parse_when("2150-01-01")) < late
    # A moment past what can be placed counts as the end of 9999.
    assert always.between(start, 2**40) == parse_when("9999-12-31", until=True) - 1 - start


def test_a_span_of_eight_thousand_years_takes_little_memory():
    twelve = "mon-sun " + ",".join(f"{h:02d}:00-{h:02d}:30" for h in range(0, 24, 2))
    closed = ClosedDays()
    closed.calendars.append(country("NL"))
    clock = Clock(parse_hours(twelve), ZoneInfo("Europe/Amsterdam"), closed)
    tracemalloc.start()
    try:
        waited = clock.between(parse_when("2026-01-05"), parse_when("9999-12-31"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert waited > 0
    # Laid out day by day it was 12 intervals a day: 35 million, gigabytes.
    assert peak < 24 * 2**20, peak


MINUTES = "mon-sun " + ",".join(f"00:{m:02d}-00:{m + 1:02d}" for m in range(0, 2 * (RANGES + 1), 2))
SAID = f"it opens {RANGES + 1} times on monday; a day has at most {RANGES} ranges of open hours"


def test_more_ranges_a_day_than_the_limit_are_refused_in_words_on_both_faces(
    tmp_path,
    console_on,  # noqa: F811
):
    db = str(tmp_path / "queue.db")
    store_log(db, QUEUE)
    result = runner.invoke(app, ["queue", *ASK, "--hours", MINUTES, "--db", db])
    assert result.exit_code == 2 and SAID in result.stderr
    assert "Traceback" not in result.output
    console = console_on(db)
    status, _headers, body = console.get("/queue.json?" + urlencode({"hours": MINUTES}))
    assert status == 400 and SAID in json.loads(body)["error"]
    status, _headers, html = console.get("/queue?" + urlencode({"hours": MINUTES}))
    assert status == 400 and SAID in html.decode()
    twelve = MINUTES.rsplit(",", 1)[0]  # the limit itself is taken
    ok = runner.invoke(app, ["queue", *ASK, "--hours", twelve, "--db", db, "-f", "json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)


def test_the_queue_at_the_end_of_9999_is_counted_not_cut_at_a_horizon(tmp_path):
    db = str(tmp_path / "queue.db")
    store_log(db, QUEUE)
    seconds = {}
    for at in ("2150-01-01", "9999-12-31"):
        args = ["queue", "--at", at, "--hours", "mon-fri 09:00-17:30", "-f", "json", "-n", "1"]
        result = runner.invoke(app, [*args, "--db", db])
        assert result.exit_code == 0, result.output
        (row,) = json.loads(result.stdout)
        seconds[at] = row["waitingSeconds"]
    since = datetime.fromisoformat(row["waitingSince"].replace("Z", "+00:00"))
    assert since.tzinfo == timezone.utc
    assert seconds["9999-12-31"] - seconds["2150-01-01"] == (
        weekdays(date(2150, 1, 1), date(9999, 12, 30)) * 30600
    )
