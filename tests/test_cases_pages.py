"""`cases --past CASEID` and the cases page's next page: every case once, in both orders, on
SQLite and PostgreSQL, from the kept summaries (no filter) and from the events (a filter)."""

from __future__ import annotations

import json
import re

from test_console import start_console
from test_queue import store_log
from test_report import agent, close, customer
from typer.testing import CliRunner

from tbhook.cli import app

runner = CliRunner(env={"COLUMNS": "200"})
BASE = 1_700_000_000
# Cases 7001..7012, every third on source 3 (a filter read from the events, not the summaries).
LOG = [
    event
    for case in range(7001, 7013)
    for event in (
        {**customer(case, BASE + case), "sourceId": 3 if case % 3 == 0 else 14},
        agent(case, BASE + case + 60),
        *([close(case, BASE + case + 120)] if case % 2 else []),
    )
]


def cases(*args: str, db: str):
    result = runner.invoke(app, ["cases", *args, "--db", db, "-f", "json"])
    assert result.exit_code == 0, result.output
    return [row["caseId"] for row in json.loads(result.stdout)], result.stderr


def pages(*args: str, db: str) -> list[list[int]]:
    """Every page of ``cases -n 5 ARGS``, each asked past the last case of the one before."""
    found, past = [], []
    while True:
        ids, stderr = cases("-n", "5", *args, *past, db=db)
        if not ids:
            assert "No cases: no case" in stderr and "is past caseId" in stderr
            return found
        found.append(ids)
        past = ["--past", str(ids[-1])]


def test_pages_past_a_case_list_every_case_once_in_both_orders(target):
    store_log(target, LOG)
    everything = list(range(7012, 7000, -1))
    assert cases("-n", "0", db=target)[0] == everything
    assert pages(db=target) == [everything[:5], everything[5:10], everything[10:]]
    assert pages("--order", "asc", db=target) == [
        everything[::-1][:5], everything[::-1][5:10], everything[::-1][10:]
    ]  # fmt: skip
    on_3 = [case for case in everything if case % 3 == 0]
    assert [c for page in pages("--source", "3", db=target) for c in page] == on_3
    assert pages("--source", "3", "--order", "asc", db=target) == [on_3[::-1]]
    assert cases("--past", "7003", "--source", "3", db=target)[0] == [7002]
    assert cases("--past", "7002", "--source", "3", db=target)[0] == []


def test_the_cases_page_links_to_its_next_page_and_its_twin_agrees(tmp_path):
    db = store_log(str(tmp_path / "pages.db"), LOG)
    console = start_console(db)
    try:
        status, _headers, html = console.get("/cases?limit=5")
        assert status == 200 and "5 of 12 cases" in html.decode()
        seen = []
        while True:
            page = html.decode()
            seen += [int(c) for c in re.findall(r'<tr data-href="/cases/(\d+)"', page)]
            found = re.search(r'<a href="(/cases\?[^"]+)" rel="next">', page)
            if not found:
                break
            status, _headers, html = console.get(found.group(1).replace("&amp;", "&"))
            assert status == 200
        assert seen == list(range(7012, 7000, -1))
        assert "first page" in page
        body = console.get("/cases.json?limit=5&past=7008")[2]
        assert body == runner.invoke(app, ["cases", "-n", "5", "--past", "7008", "-f", "json",
                                           "--db", db]).stdout_bytes  # fmt: skip
        status, _headers, html = console.get("/cases?past=%D9%A3")
        assert status == 400 and "past" in html.decode() and "digits 0-9" in html.decode()
    finally:
        console.proc.terminate()
        console.proc.wait(10)


def test_the_cases_and_quarantine_pages_show_times_in_the_zone_asked(tmp_path):
    """?tz= on the lists, as --tz on their commands: not the console's own zone."""
    from tbhook.model.events import parse
    from tbhook.store import Delivery, open_store

    db = store_log(str(tmp_path / "zones.db"), LOG[:2])
    store = open_store(db)
    store.append([Delivery(b"{oops", parse(b"{oops"))])  # kept in quarantine
    store.close()
    console = start_console(db)
    try:
        for path in ("/cases", "/quarantine"):
            utc = console.get(path)[2].decode()
            tokyo = console.get(path + "?tz=Asia/Tokyo")[2].decode()
            assert " JST<" in tokyo and " JST<" not in utc, path
    finally:
        console.proc.terminate()
        console.proc.wait(10)
