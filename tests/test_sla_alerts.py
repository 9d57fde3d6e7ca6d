"""`serve --notify URL --sla SPEC`: an ``sla`` alert when a case waits past its target, once
per wait, resolved when an agent answers; over real sockets on SQLite and PostgreSQL. What
serve refuses, and the notifier forgetting resolved alerts (one per wait would pile up)."""

from __future__ import annotations

import json
import re
import time

import pytest
from conftest import wait_for
from test_report import agent, customer, store_log
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.notify import MemoryState, Notifier

SLA = ("--sla", "first=1h,reply=4h")


def post(server, event: dict) -> None:
    assert server.post(json.dumps(event).encode()).status == 200


def messages(sink) -> list[dict]:
    return [json.loads(body) for body, _ in sink.received]


def test_a_wait_past_its_target_fires_once_and_resolves_when_an_agent_answers(target, serve, sink):
    now = int(time.time())
    store_log(target, [customer(8001, now - 7200)])  # its hour ran out an hour ago
    url = sink()
    server = serve("--notify", url.url, *SLA, db=target)
    breaches = int(time.time()) - 3600 + 4  # its hour runs out 4 s from now
    post(server, customer(8002, breaches, person=9802))
    wait_for(lambda: len(url.received) >= 1, timeout=30)
    post(server, customer(8002, int(time.time())))  # the same wait, one more message
    post(server, agent(8001, int(time.time())))  # never alerted: nothing to resolve
    post(server, agent(8002, int(time.time()), person=9802))
    wait_for(lambda: len(url.received) >= 2, timeout=30)
    post(server, customer(8003, int(time.time()) - 3600 - 60))  # the sentinel: past at once
    wait_for(lambda: len(url.received) >= 3, timeout=30)
    firing, resolved, sentinel = messages(url)
    assert (firing["alert"], firing["state"]) == ("sla", "firing")
    assert "case 8002 (person 9802, source 14) has waited " in firing["text"]
    assert re.search(r"for a first reply, \d+s past its target of 60m", firing["text"])
    details = firing["details"]
    assert (details["caseId"], details["kind"], details["slaSeconds"]) == (8002, "first", 3600)
    assert details["key"] == f"8002@{details['waitingSince']}" and details["slaLeftSeconds"] < 0
    assert (resolved["alert"], resolved["state"]) == ("sla", "resolved")
    assert "case 8002 no longer waits past its target" in resolved["text"]
    assert resolved["details"]["key"] == details["key"]
    assert (sentinel["state"], sentinel["details"]["caseId"]) == ("firing", 8003)
    assert "(sla): case 8002" in server.stderr()  # in the log too


def test_a_wait_stamped_long_ago_that_arrives_after_the_start_is_alerted(target, serve, sink):
    """Tracebuzz retries a delivery for hours: a message stamped 17 minutes ago, breached
    16 minutes ago, that comes after serve started, is alerted; one stored before the start
    (an old unanswered case) is still not."""
    now = int(time.time())
    store_log(target, [customer(8101, now - 7200)])  # stored before: breached 2 h ago
    url = sink()
    server = serve("--notify", url.url, "--sla", "first=1m", db=target)
    post(server, customer(8102, int(time.time()) - 17 * 60, person=9812))
    wait_for(lambda: len(url.received) >= 1, timeout=30)
    post(server, customer(8103, int(time.time()) - 61))  # the sentinel: a look after it
    wait_for(lambda: len(url.received) >= 2, timeout=30)
    late, sentinel = messages(url)
    assert (late["alert"], late["state"], late["details"]["caseId"]) == ("sla", "firing", 8102)
    assert late["details"]["slaSeconds"] == 60 and late["details"]["slaLeftSeconds"] < -15 * 60
    assert sentinel["details"]["caseId"] == 8103
    assert "case 8101" not in server.stderr()


@pytest.mark.parametrize(
    "args, option, said",
    [
        (("--sla", "first=4x"), "'--sla'", "'4x' is not a duration"),
        (("--hours", "mon-fri 09:00-17:00"), "'--hours'", "give --sla too"),
        (("--sla", "first=0s"), "'--sla'", "'first=0s' is a target of nothing"),
        (("--sla", "first=0"), "'--sla'", "'first=0' is a target of nothing"),
        (("--sla", "first=1h,reply=0h0m"), "'--sla'", "'reply=0h0m' is a target of nothing"),
        (("--sla", ""), "'--sla'", "cannot read '': it is empty"),
        (("--sla", "first=1h", "--hours", " "), "'--hours'", "cannot read ' ': it is empty"),
    ],
)
def test_what_serve_cannot_alert_on_is_a_usage_error(db_path, args, option, said):
    result = CliRunner().invoke(app, ["serve", "--db", str(db_path), *args])
    assert result.exit_code == 2
    assert f"Invalid value for {option}" in result.stderr
    assert said in " ".join(result.stderr.split())


def test_resolved_alerts_are_forgotten_once_they_hold_nothing_back():
    moment = [1000.0]
    state = MemoryState()
    notifier = Notifier([], state=state, clock=lambda: moment[0], flap_seconds=600).start()
    try:
        notifier.fire("sla", "7@2026-01-01T00:00:00Z", "case 7 has waited")
        notifier.resolve("sla", "7@2026-01-01T00:00:00Z")
        notifier.fire("sla", "8@2026-01-01T00:00:00Z", "case 8 has waited")  # still firing
        wait_for(lambda: len(state.state.get("alerts", {})) == 2)
        moment[0] += 601
        notifier.fire("sla", "9@2026-01-01T00:10:00Z", "case 9 has waited")
        wait_for(lambda: "sla:9@2026-01-01T00:10:00Z" in state.state["alerts"])
        assert sorted(state.state["alerts"]) == [
            "sla:8@2026-01-01T00:00:00Z",
            "sla:9@2026-01-01T00:10:00Z",
        ]
    finally:
        notifier.close()
