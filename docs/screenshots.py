"""PNGs of each console page, desktop (1280 px) and phone (375 px) wide, for the README and
docs/console.md: `make screenshots` (Debian's chromium, through Playwright).

They show the docs' own logs (``examples.py``): three weeks of a support team's traffic, and
the sample log for the quarantine. Run it again after a change to the pages, and commit the
PNGs: they are pictures for the docs, not something the tests make.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# name, log, path: the support log's three weeks, in Amsterdam's business hours
REPORT = "/report?by=day&since=2024-04-29&until=2024-05-19&tz=Europe/Amsterdam"
PAGES = [
    ("events", "reports", "/"),
    ("event", "reports", "/events/{event}"),
    ("person", "sample", "/persons/20"),
    ("cases", "reports", "/cases"),
    ("case", "reports", "/cases/{case}"),
    ("report", "reports", REPORT + "&hours=mon-fri+09:00-17:30"),
    ("quarantine", "sample", "/quarantine"),
    ("health", "sample", "/health"),
]
SIZES = {"": (1280, 900), "-phone": (375, 812)}


def start(db: Path) -> tuple[subprocess.Popen, str]:
    """``tbhook ui`` on a free port of 127.0.0.1, and its URL (from its banner, on stderr;
    the rest of what it says is read and dropped, so it never waits on a full pipe)."""
    import threading

    proc = subprocess.Popen(
        [sys.executable, "-m", "tbhook", "ui", "--db", str(db), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if found:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, found.group(1).rstrip("/")
    raise SystemExit(f"tbhook ui did not start (exit {proc.wait()})")


def main(out: Path) -> None:
    import sqlite3

    from examples import DB, REPORTS
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("Error: chromium is not installed (make chromium installs it, as root)")
    with sqlite3.connect(REPORTS) as conn:  # a busy case, and one of its messages
        case, event = conn.execute(
            'SELECT "caseId", max(id) FROM events WHERE "caseId" IS NOT NULL '
            'GROUP BY "caseId" ORDER BY count(*) DESC LIMIT 1'
        ).fetchone()
    out.mkdir(parents=True, exist_ok=True)
    consoles = {"reports": start(REPORTS), "sample": start(DB)}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium)
            for suffix, (width, height) in SIZES.items():
                page = browser.new_page(viewport={"width": width, "height": height})
                for name, log, path in PAGES:
                    base = consoles[log][1]
                    page.goto(base + path.format(case=case, event=event))
                    target = out / f"{name}{suffix}.png"
                    page.screenshot(path=str(target))
                    print(target)
                page.close()
            browser.close()
    finally:
        for proc, _ in consoles.values():
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "screenshots")
