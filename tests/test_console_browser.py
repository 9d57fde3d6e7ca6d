"""The console in a real browser: Debian's chromium, driven by Playwright's Python API
(pointed at it; Playwright's own browser download is never used). A delivery posted to the
receiver shows in an open list within a second, without a reload; a click opens its whole
body; filters and body search narrow the list; the report's charts carry the numbers of
`tbhook report`; hostile event names run nothing; the keyboard works; a phone's width fits."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import event_body
from test_console import HOSTILE, a_log, cli_json, start_console

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        why = "no chromium (Debian's chromium package; `make test` installs it when run as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(why + ": the console's browser tests must run under CI")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture
def running(tmp_path, serve):
    """A receiver and its console on one database: (receiver, console base URL)."""
    db = tmp_path / "browser.db"
    receiver = serve(db=db)
    a_log(str(db))
    console = start_console(db)
    yield receiver, f"http://127.0.0.1:{console.port}", str(db)
    console.proc.terminate()
    console.proc.wait(10)


def test_a_delivery_appears_in_an_open_list_within_a_second_without_a_reload(page, running):
    receiver, base, _db = running
    page.goto(base + "/")
    page.wait_for_selector("tr[data-id='6']")
    page.evaluate("window.stillTheSamePage = true")
    page.wait_for_function("document.getElementById('live') !== null")
    assert receiver.post(event_body(caseId=4242, uniqueId=4242)).status == 200
    page.wait_for_selector("tr[data-id='7']", timeout=15000)  # how soon: bench/scale.py
    assert page.evaluate("window.stillTheSamePage") is True
    first = page.locator("#rows tr").first
    assert first.get_attribute("data-id") == "7" and "4242" in first.inner_text()


def test_scrolled_away_the_list_keeps_still_and_counts_what_is_new(page, running):
    receiver, base, db = running
    from test_timelines import stored

    stored(str(db), [event_body(caseId=5000 + n, uniqueId=5000 + n) for n in range(60)])
    page.set_viewport_size({"width": 1280, "height": 400})
    page.goto(base + "/")
    page.mouse.wheel(0, 2000)
    page.wait_for_function("window.scrollY > 100")
    top = page.locator("#rows tr").first.get_attribute("data-id")
    assert receiver.post(event_body(caseId=4343, uniqueId=4343)).status == 200
    page.wait_for_selector("#new-events:visible", timeout=15000)
    assert page.inner_text("#new-events") == "1 new"
    assert page.locator("#rows tr").first.get_attribute("data-id") == top  # not shifted
    page.click("#new-events")
    page.wait_for_function("document.querySelector('#rows tr').dataset.id === '67'")


def test_a_click_opens_the_whole_body_and_filters_narrow_the_list(page, running):
    receiver, base, _db = running
    marker = "needle-" + "x" * 20000 + "-end"  # a body far past any inspector's 10 KB
    assert receiver.post(event_body(caseId=8080, uniqueId=8080, note=marker)).status == 200
    page.goto(base + "/")
    page.wait_for_selector("tr[data-id='7']")
    page.click("tr[data-id='7'] a >> nth=0")
    page.wait_for_url("**/events/7")
    body = page.inner_text("#body")
    assert marker in body and body.count("x") >= 20000
    page.goto(base + "/")
    page.fill("input[name=case]", "501")
    page.click("form.filters button")
    page.wait_for_url("**/?*case=501*")
    ids = page.locator("#rows tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert ids == ["2", "1"]
    page.fill("#search", "needle-")
    page.press("#search", "Enter")
    page.wait_for_url("**/?text=needle-")
    assert page.locator("#rows tr").evaluate_all("rows => rows.map(r => r.dataset.id)") == ["7"]


def test_the_report_page_draws_the_numbers_of_tbhook_report(page, running):
    _receiver, base, db = running
    query = "by=day&since=2023-11-14&until=2023-11-16"
    page.goto(f"{base}/report?{query}")
    charts = page.locator("svg.chart")
    assert charts.count() == 5
    drawn = page.locator("svg.chart [data-value]").evaluate_all(
        "marks => marks.map(m => [m.closest('svg').dataset.chart, m.dataset.series, "
        "m.dataset.label, Number(m.dataset.value)])"
    )
    rows = json.loads(cli_json(db, "report", "--since", "2023-11-14", "--until", "2023-11-16"))
    expected = set()
    for row in rows:
        for chart, series, field in (
            ("Cases opened and closed", "new", "newCases"),
            ("Cases opened and closed", "closed", "closedCases"),
            ("Backlog: open at the end", "open", "openAtEnd"),
            ("First response", "median", "firstResponseMedian"),
            ("Replies", "p90", "replyP90"),
            ("Resolution", "median", "resolutionMedian"),
        ):
            if row[field] is not None:
                expected.add((chart, series, row["period"], row[field]))
    assert expected and expected <= {tuple(mark) for mark in drawn}


def test_hostile_names_and_bodies_are_shown_as_text_and_run_nothing(page, running):
    receiver, base, _db = running
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    script = "<script>window.pwned = 2; alert('x')</script>"
    body = json.dumps({"event": script, "caseId": 9, "timestamp": 1_700_000_400, "x": HOSTILE})
    assert receiver.post(body.encode()).status == 200
    for path in ("/", "/events/6", "/events/7", "/cases/503"):
        page.goto(base + path)
        page.wait_for_load_state("load")
        assert page.evaluate("window.pwned") is None, path
        assert page.locator("img[src=x]").count() == 0, path
    page.goto(base + "/events/7")
    assert script in page.inner_text("h1") + page.inner_text("#body")
    assert dialogs == [] and page.title() == "Event 7 · tbhook console"


def test_keyboard_moves_opens_and_searches(page, running):
    _receiver, base, _db = running
    page.goto(base + "/")
    page.wait_for_selector("#rows tr")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    selected = page.locator("#rows tr.selected")
    assert selected.count() == 1 and selected.get_attribute("data-id") == "5"
    page.keyboard.press("Enter")
    page.wait_for_url("**/events/5")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search"


def test_a_phone_s_width_fits_and_dark_mode_is_dark(browser, running):
    _receiver, base, _db = running
    context = browser.new_context(viewport={"width": 375, "height": 800}, color_scheme="dark")
    phone = context.new_page()
    try:
        for path in ("/", "/events/1", "/cases", "/report", "/cases/501", "/health"):
            phone.goto(base + path)
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, (path, width)
        background = phone.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(21, 23, 26)"
    finally:
        context.close()
