"""The console in a real browser: Debian's chromium, driven by Playwright's Python API
(pointed at it; Playwright's own browser download is never used). A delivery posted to the
receiver shows in an open list within a second, without a reload; a click opens its whole
body; filters and body search narrow the list; the report's charts carry the numbers of
`tbhook report`; hostile event names run nothing; the keyboard works; a phone's width fits;
a page on another port of the same host, tossing cookies, can make the console do nothing;
signing in and out."""

from __future__ import annotations

import html
import http.server
import json
import os
import shutil
import threading

import pytest
from conftest import event_body, request
from test_console import HOSTILE, a_log, cli_json, quarantine_a_readable_body, start_console

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
    rows = json.loads(
        cli_json(db, "report", "--since", "2023-11-14", "--until", "2023-11-16", "--no-total")
    )
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


def test_with_an_sla_the_report_charts_its_targets_and_the_share_within_them(page, running):
    _receiver, base, db = running
    page.goto(f"{base}/report?by=day&since=2023-11-14&until=2023-11-16&sla=first%3D1h%2Creply%3D4h")
    targets = page.locator("svg.chart line.target").evaluate_all(
        "lines => lines.map(l => [l.closest('svg').dataset.chart, Number(l.dataset.target)])"
    )
    assert targets == [["First response", 3600], ["Replies", 14400]]
    drawn = page.locator("svg[data-chart='Answered within the SLA'] [data-value]").evaluate_all(
        "marks => marks.map(m => [m.dataset.series, m.dataset.label, Number(m.dataset.value)])"
    )
    rows = json.loads(
        cli_json(db, "report", "--since", "2023-11-14", "--until", "2023-11-16",
                 "--sla", "first=1h,reply=4h", "--no-total")
    )  # fmt: skip
    expected = {
        (series, row["period"], row[field])
        for row in rows
        for series, field in (("first replies", "firstWithinSla"), ("replies", "repliesWithinSla"))
        if row[field] is not None
    }
    assert expected and expected == {tuple(mark) for mark in drawn}
    assert "1st in SLA" in page.inner_text("table.report thead")


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
        phone.goto(base + "/")
        for cell in ("td.time", "td.name"):  # each row's time and event, on the screen
            right = phone.locator(f"table.events tbody tr:first-child {cell}").bounding_box()
            assert right and right["x"] + right["width"] <= 375, (cell, right)
        phone.goto(base + "/report?since=2023-11-01&until=2023-11-30")
        sizes = phone.locator("svg.chart text.axis").evaluate_all(
            "ts => ts.filter(t => getComputedStyle(t).display !== 'none').map(t => "
            "parseFloat(getComputedStyle(t).fontSize) * "
            "t.closest('svg').getBoundingClientRect().width / 720)"
        )
        assert sizes and min(sizes) >= 10, sizes
        heights = phone.locator("table.report tbody td:first-child").evaluate_all(
            "cells => cells.map(c => c.getBoundingClientRect().height)"
        )
        assert max(heights) < 2 * min(heights), heights  # no date wraps onto a second line
        for path in ("/cases", "/queue?at=2023-11-16", "/quarantine"):  # a date on one line
            phone.goto(base + path)
            lines = phone.locator("td.time").evaluate_all(  # the lines the date's text takes
                "cells => cells.map(c => { const r = document.createRange(); "
                "r.selectNodeContents(c); return new Set([...r.getClientRects()]"
                ".map(b => Math.round(b.top))).size; })"
            )
            assert 1 in lines and all(n <= 1 for n in lines), (path, lines)  # 0: empty
        phone.goto(base + "/cases")
        last = phone.locator("table.cases tbody tr:first-child td:last-child")
        last.scroll_into_view_if_needed()
        box = last.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 375, box  # reachable
        background = phone.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(21, 23, 26)"
    finally:
        context.close()


# A page of someone else's, served on another port of 127.0.0.1: cookies ignore ports, so it
# can write the console's cookies (the old CSRF cookie, the session's), then post a form.
ATTACK = """<!doctype html><meta charset=utf-8><title>elsewhere</title>
<form id="f" method="post" action="{action}">{fields}</form>
<script>
document.cookie = "tbhook_csrf=pwn; path=/";
document.cookie = "tbhook_console=pwn; path=/";
document.cookie = "tbhook_session=PlantedPlantedPlantedPlantedPlantedPlanted1; path=/";
document.getElementById("f").submit();
</script>"""


@pytest.fixture
def elsewhere():
    """(pages, its origin): a web server on another port of 127.0.0.1, serving ``pages``."""
    pages: dict[str, str] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = pages.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield pages, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def attack(action: str, **fields: str) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
        for name, value in fields.items()
    )
    return ATTACK.format(action=action, fields=hidden)


def test_a_page_on_another_port_can_neither_send_nor_retry(page, tmp_path, elsewhere, sink):
    db = tmp_path / "csrf.db"
    a_log(str(db))
    quarantine_a_readable_body(db)
    console = start_console(db)
    base = f"http://127.0.0.1:{console.port}"
    try:
        target = sink()
        pages, origin = elsewhere
        # First, before this browser has any cookie of the console's (an HttpOnly one could
        # not be overwritten by a script; a new browser, or one that cleared it, has none).
        pages["/send"] = attack(f"{base}/events/1/send", csrf="pwn", url=target.url)
        pages["/retry"] = attack(f"{base}/quarantine/retry", csrf="pwn")
        for path, action in (("/send", "/events/1/send"), ("/retry", "/quarantine/retry")):
            page.goto(origin + path)
            page.wait_for_url(base + "/**")  # the form went; the console answered
            assert page.url == base + action, page.url  # not a page after a redirect
            assert "came from another site: nothing was done" in page.inner_text("body")
        tossed = {c["name"]: c["value"] for c in page.context.cookies(base)}
        assert tossed["tbhook_csrf"] == "pwn"  # the cookies were written, and sent
        assert tossed["tbhook_session"] == "PlantedPlantedPlantedPlantedPlantedPlanted1"
        assert len(json.loads(request(console.port, "GET", "/quarantine.json").body)) == 2

        # The sentinels: the console's own forms work, and theirs are the first effects.
        page.goto(base + "/events/2")
        page.fill("form.send input[name=url]", target.url)
        page.click("form.send button")
        page.wait_for_url("**/events/2?notice=*")
        assert page.inner_text(".notice") == f"{target.url} answered 200"
        sent = request(console.port, "GET", "/events/2/raw").body
        assert [body for body, _headers in target.received] == [sent]
        page.goto(base + "/quarantine")
        page.click("form.actions button")
        page.wait_for_url("**/quarantine?notice=*")
        assert page.inner_text(".notice") == "Retried: 1 of 2 moved into events."
    finally:
        console.proc.terminate()
        console.proc.wait(10)


def test_signing_in_and_out(page, tmp_path):
    db = tmp_path / "signed.db"
    a_log(str(db))
    token = "browser-token-0123456789"
    console = start_console(db, env={"TBHOOK_UI_TOKEN": token})
    base = f"http://127.0.0.1:{console.port}"
    try:
        page.goto(base + "/cases")
        page.wait_for_url(base + "/login")
        page.fill("input[name=token]", "not-the-token-at-all")
        page.click("form.login button")
        assert "not the token this console was started with" in page.inner_text("main")
        page.fill("input[name=token]", token)
        page.click("form.login button")
        page.wait_for_url(base + "/")
        page.wait_for_selector("#rows tr[data-id='6']")
        cookie = next(c for c in page.context.cookies(base) if c["name"] == "tbhook_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        page.click("form.signout button")
        page.wait_for_url(base + "/login")
        page.goto(base + "/cases")
        page.wait_for_url(base + "/login")  # signed out: the old cookie opens nothing
    finally:
        console.proc.terminate()
        console.proc.wait(10)


def test_cases_sorted_by_a_column_put_its_empty_cells_last_both_ways(running, page):
    """Case 502 has no reply: sorted by first reply either way, it is the last row; the page
    cut short by its limit says how many cases there are in all."""
    _receiver, base, db = running
    page.goto(base + "/cases")
    header = page.locator("table.cases th", has_text="1st reply")

    def first_column() -> list[str]:
        return page.locator("table.cases tbody tr td:first-child").all_inner_texts()

    for _ in range(2):
        header.click()
        assert first_column()[-1] == "502"
    listed = json.loads(cli_json(db, "cases", "-n", "0"))
    page.goto(base + "/cases?limit=1")
    assert page.locator("p.count").inner_text().startswith(f"1 of {len(listed)} cases")
