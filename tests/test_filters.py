"""The filter bundle: --path and Unix seconds on every filtering command, and counts that
never ignore a filter."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import event_body
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.events import parse
from tbhook.model.filters import Filters
from tbhook.model.times import parse_when
from tbhook.store import Delivery
from tbhook.store.sqlite import SQLiteStore

runner = CliRunner(env={"COLUMNS": "200"})


def run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def two_profiles(db_path):
    """One receiver, two Tracebuzz profiles told apart by path."""
    store = SQLiteStore.open(db_path)
    for n in range(6):
        path = "/profile-a" if n % 3 else "/profile-b"
        body = event_body(caseId=100 + n, uniqueId=n, timestamp=1_663_831_826 + n * 3600)
        store.append([Delivery(body, parse(body), path=path)])
    store.close()
    return db_path


FILTERING = [
    ["events", "-f", "ndjson"],
    ["cases", "-f", "ndjson"],
    ["export", "-f", "ndjson"],
    ["tail", "--no-follow", "-f", "ndjson"],
]


@pytest.mark.parametrize("command", FILTERING, ids=lambda c: c[0])
@pytest.mark.parametrize("path, cases", [("/profile-a", 4), ("profile-b", 2)])
def test_path_on_every_filtering_command(two_profiles, command, path, cases):
    result = run(*command, "--path", path, "--db", str(two_profiles))
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == cases


def test_stats_by_path_counts_only_that_path(two_profiles):
    counts = json.loads(run("stats", "-f", "json", "--path", "/profile-b").stdout)
    assert counts["events"] == 2
    everything = json.loads(run("stats", "-f", "json").stdout)
    assert everything["events"] == 6


def test_a_path_no_one_posted_to_is_explained(two_profiles):
    result = run("events", "--path", "/profile-c")
    assert result.exit_code == 0
    assert result.stderr == "No events: no event was posted to /profile-c\n"


def test_since_and_until_take_unix_seconds_as_tracebuzz_stamps_them(two_profiles):
    first = 1_663_831_826
    rows = run(
        "events", "-f", "ndjson", "--since", str(first + 3600), "--until", f"@{first + 7200}"
    )
    assert [json.loads(line)["timestamp"] for line in rows.stdout.splitlines()] == [
        first + 7200,
        first + 3600,
    ]  # --until includes its own second, as an ISO moment does
    assert parse_when("1663831826") == parse_when("2022-09-22T07:30:26Z")
    assert parse_when("1663831826", until=True) == parse_when("2022-09-22T07:30:26Z", until=True)


def test_counts_kept_per_day_never_ignore_a_filter_they_do_not_know(two_profiles):
    """stats on SQLite answers from event_counts only for the filters it lists; a filter added
    later must send it to the events themselves, never be ignored."""

    @dataclasses.dataclass(frozen=True)
    class Wider(Filters):
        mood: str | None = None

    store = SQLiteStore.open_readonly(two_profiles)
    try:
        assert store.reads.stats_is_cheap(Filters(events=("newResult",)))
        assert not store.reads.stats_is_cheap(Wider(mood="happy"))
        assert not store.reads.stats_is_cheap(Filters(path="/profile-a"))
        assert sum(store.reads.stats_counter(Filters(path="/profile-b")).values()) == 2
    finally:
        store.close()


def test_the_one_compiler_refuses_a_filter_it_has_no_sql_for():
    """A field added to Filters without its clause is an error at once, never a filter
    silently dropped from the query."""
    from tbhook.store.sql import COMPILED, where
    from tbhook.store.sqlite.dialect import SQLITE

    @dataclasses.dataclass(frozen=True)
    class Wider(Filters):
        mood: str | None = None

    assert {f.name for f in dataclasses.fields(Filters)} == COMPILED
    with pytest.raises(ValueError, match="no SQL for the filters \\['mood'\\]"):
        where(Wider(mood="happy"), SQLITE, lambda person: [person])
    clause, params = where(Wider(case=5), SQLITE, lambda person: [person])
    assert clause == 'TRUE AND e."caseId" = ?' and params == [5]


def test_text_finds_bytes_inside_raw_bodies_on_both_backends(tmp_path, pg_url):
    """--text matches the raw body byte for byte (the same on SQLite and PostgreSQL), and an
    empty answer says why."""
    from typer.testing import CliRunner

    from tbhook.cli import app
    from tbhook.model.events import parse
    from tbhook.store import Delivery, open_store

    runner = CliRunner()
    bodies = [
        b'{"event": "note", "caseId": 1, "timestamp": 1700000000, "text": "M\\u00fcller"}',
        '{"event": "note", "caseId": 2, "timestamp": 1700000001, "text": "Müller"}'.encode(),
        b'{"event": "note", "caseId": 3, "timestamp": 1700000002, "text": "50% off"}',
    ]
    for target in (str(tmp_path / "text.db"), pg_url):
        store = open_store(target)
        store.append([Delivery(body, parse(body)) for body in bodies])
        store.close()
        found = {}
        for text in ("Müller", "\\u00fc", "50%", "_", "nobody"):
            result = runner.invoke(app, ["events", "--text", text, "-f", "json", "--db", target])
            assert result.exit_code == 0, result.output
            found[text] = sorted(e["caseId"] for e in json.loads(result.stdout))
        assert found == {"Müller": [2], "\\u00fc": [1], "50%": [3], "_": [], "nobody": []}
        empty = runner.invoke(app, ["events", "--text", "nobody", "--db", target])
        assert 'no raw body contains "nobody"' in empty.output
