"""The receiver's throttled warnings: the first line of a kind at once, the rest held back and
written as one line when the period is over, on a timer, without waiting for another one."""

from __future__ import annotations

import asyncio
import io
import json

from tbhook.receiver.log import Log, Throttled


def test_held_lines_are_written_when_the_period_ends_without_another_line():
    out = io.StringIO()
    throttled = Throttled(Log("json", stream=out), period=0.2)

    async def scenario() -> list[dict]:
        for n in range(4):
            throttled("401", f"rejected (401) #{n}", status=401)
        assert len(out.getvalue().splitlines()) == 1  # the first, at once
        for _ in range(200):  # nothing else happens: the timer must write the summary
            await asyncio.sleep(0.02)
            if len(out.getvalue().splitlines()) == 2:
                break
        return [json.loads(line) for line in out.getvalue().splitlines()]

    first, summary = asyncio.run(scenario())
    assert first["message"] == "rejected (401) #0" and "alsoSuppressed" not in first
    assert summary["message"] == (
        "rejected (401) #3 (the last of 3 lines like it held back in the 0.2 s after the last line)"
    )
    assert (summary["alsoSuppressed"], summary["kind"], summary["status"]) == (3, "401", 401)


def test_a_flood_writes_about_one_line_per_period_and_counts_every_one():
    out = io.StringIO()
    throttled = Throttled(Log("json", stream=out), period=0.2)

    async def flood() -> None:
        for n in range(100):
            throttled("503", f"answered 503 #{n}")
            await asyncio.sleep(0.01)  # a second of them
        throttled.flush()

    asyncio.run(flood())
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert 3 <= len(records) <= 12
    assert records[0]["message"] == "answered 503 #0"
    accounted = sum(r.get("alsoSuppressed", 1) for r in records)
    assert accounted == 100  # each line, written or held back, counted once


def test_held_lines_are_accounted_for_at_shutdown():
    out = io.StringIO()
    throttled = Throttled(Log("human", stream=out), period=60)
    for n in range(5):
        throttled("store", f"NOT STORED #{n}")
    throttled.flush()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1].endswith(
        "NOT STORED #4 (the last of 4 lines like it held back before shutdown)"
    )
