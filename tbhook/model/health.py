"""Whether a tbhook log is healthy: the rules `doctor` applies to the facts the store gives
(integrity, schema, deliveries, quarantine, size, unknown values, durability). Pure: the
command gathers the facts, ``output.views`` shows the result."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from tbhook.model.events import SCHEDULE_MINUTES
from tbhook.model.times import duration
from tbhook.model.words import counted, human_size

UNREADABLE: dict[str, Any] = {
    "events": None,
    "byEvent": {},
    "retriedEvents": 0,
    "extraDeliveries": 0,
    "lateDeliveries": 0,
    "maxLagSeconds": None,
    "lastReceivedAt": None,
    "quarantined": 0,
    "testDeliveries": 0,
    "skippedIds": 0,
}
LATE_SECONDS = 300  # a delivery this much after its event means Tracebuzz was retrying
# The spec's table, read two ways: each value the wait after the previous failure (their sum),
# or each value the time since the first failure (the last value alone).
OUTAGE_HOURS = (SCHEDULE_MINUTES[-1] / 60, sum(SCHEDULE_MINUTES) / 60)


NEAR_CAP = 0.9  # warn from this share of --max-db-size; fail at the cap


def seconds_since(iso: Optional[str]) -> Optional[int]:
    if iso is None:
        return None
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return int((datetime.now(timezone.utc) - moment).total_seconds())


def space_checks(used: int, cap: Optional[int]) -> list[dict[str, str]]:
    if not cap:
        return []
    share = used / cap
    where = f"{human_size(used)} of its --max-db-size cap of {human_size(cap)} ({share:.0%})"
    if share >= 0.99:
        status = "fail"
        message = f"the database holds {where}: deliveries get 503; raise the cap or prune"
    elif share >= NEAR_CAP:
        status, message = "warn", f"the database holds {where}: raise the cap or prune soon"
    else:
        status, message = "ok", f"the database holds {where}"
    return [{"check": "size cap", "status": status, "message": message}]


def unknown_checks(unknown: list[tuple[str, int, int]]) -> list[dict[str, str]]:
    listed = ", ".join(f"{field} {value} ({counted(n, 'event')})" for field, value, n in unknown)
    words = (
        f"values the Tracebuzz documentation does not list: {listed}; kept as events, "
        "labelled unknown: has Tracebuzz added a message type?"
    )
    return _warning("unknown values", words) if unknown else []


def temporary_checks(found: list[tuple[str, str, int]]) -> list[dict[str, str]]:
    """``found``: each temporary a killed command left beside the database (its path, which
    command in which process, its size)."""
    listed = "; ".join(f"{path} ({human_size(size)}, left by {who})" for path, who, size in found)
    words = (
        f"{listed}: what the command was writing when it was killed (it may hold events); its "
        "next run into that directory removes it, or delete it"
    )
    return _warning("temporary files", words) if found else []


def _warning(check: str, message: str) -> list[dict[str, str]]:
    return [{"check": check, "status": "warn", "message": message}]


def durability_checks(warning: Optional[str], facts: dict[str, Any]) -> list[dict[str, str]]:
    if "synchronousCommit" not in facts:
        return []  # SQLite: synchronous=FULL is set by tbhook itself
    if warning:
        message = warning.removeprefix("Warning: ")
        return [{"check": "durability", "status": "fail", "message": message}]
    setting = facts["synchronousCommit"]
    message = f"synchronous_commit is {setting}: a 200 means the commit is on disk"
    return [{"check": "durability", "status": "ok", "message": message}]


def checks(
    integrity: list[str],
    pending: list[str],
    health: dict[str, Any],
    stale: Optional[int],
    backend: str = "sqlite",
) -> list[dict[str, str]]:
    checks = []

    def check(name: str, status: str, message: str) -> None:
        checks.append({"check": name, "status": status, "message": message})

    if backend != "sqlite":
        check("integrity", "ok", "left to PostgreSQL (data checksums, amcheck)")
    elif integrity == ["ok"]:
        check("integrity", "ok", "the database file is sound")
    else:
        check("integrity", "fail", "; ".join(integrity[:3]) + ": restore the last backup")
    if "scanError" in health:
        check("events", "fail", f"cannot read the events: {health['scanError']}")
    if pending:
        check("schema", "warn", f"{len(pending)} migrations pending: run `tbhook serve` once")
    else:
        check("schema", "ok", "up to date")
    age = seconds_since(health["lastReceivedAt"])
    if age is None:
        check("last delivery", "warn" if stale is None else "fail", "nothing received yet")
    elif stale is not None and age > stale:
        check(
            "last delivery",
            "fail",
            f"the last delivery was {duration(age)} ago, more than {duration(stale)}: "
            "is the receiver reachable, and is the webhook still enabled in Tracebuzz?",
        )
    else:
        check("last delivery", "ok", f"{duration(age)} ago")
    tests = health.get("testDeliveries", 0)
    unreadable = health["quarantined"] - tests
    kept = (
        f"; {counted(tests, 'empty test delivery', 'empty test deliveries')} from saving "
        "the webhook kept in quarantine"
        if tests
        else ""
    )
    if unreadable:
        check(
            "quarantine",
            "warn",
            f"{counted(unreadable, 'delivery was', 'deliveries were')} kept but could not be "
            "read: see `tbhook quarantine`" + kept,
        )
    else:
        check("quarantine", "ok", "every delivery was readable" + kept)
    late = health["lateDeliveries"]
    if late:
        check(
            "late deliveries",
            "warn",
            f"{counted(late, 'event', 'events')} arrived more than {LATE_SECONDS // 60} "
            f"minutes after {'it' if late == 1 else 'they'} happened "
            f"(up to {duration(health['maxLagSeconds'])}): the receiver was down or "
            "failing and Tracebuzz was retrying",
        )
    else:
        check("late deliveries", "ok", "none")
    if health["extraDeliveries"]:
        check(
            "retries",
            "ok",
            f"{counted(health['retriedEvents'], 'event', 'events')} arrived more than once "
            f"({counted(health['extraDeliveries'], 'extra delivery', 'extra deliveries')}, "
            "kept once each)",
        )
    skipped = health.get("skippedIds", 0)
    if skipped:
        check(
            "event ids",
            "ok",
            f"{counted(skipped, 'id below the highest has', 'ids below the highest have')} "
            "no event: prune or "
            "retention deleted it, or (PostgreSQL) two receivers stored the same new delivery "
            "at once and the sequence gave both a number; no delivery is lost to a gap",
        )
    return checks


def rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """The report as (check, status, detail) rows: the facts first, then every check."""
    mib = 1024 * 1024
    by_event = ", ".join(f"{n} {name}" for name, n in report["byEvent"].items())
    if report["backend"] == "sqlite":
        where = (
            "file",
            f"{report['sizeBytes'] / mib:.1f} MiB, WAL {report['walBytes'] / mib:.1f} MiB",
        )
    else:
        where = (
            "server",
            f"PostgreSQL {report['serverVersion']}, {report['databaseBytes'] / mib:.1f} MiB, "
            f"synchronous_commit {report['synchronousCommit']}",
        )
    rows = [
        where,
        ("schema version", str(report["schema"])),
        ("events", f"{report['events']}" + (f" ({by_event})" if by_event else "")),
        ("last received", str(report["lastReceivedAt"] or "never")),
    ]
    facts = [{"check": name, "status": "", "detail": detail} for name, detail in rows]
    checks = [
        {"check": c["check"], "status": c["status"], "detail": c["message"]}
        for c in report["checks"]
    ]
    return facts + checks


def notes(report: dict[str, Any]) -> list[Any]:
    """What a person reads under the table: the outage budget, and the verdict (styled)."""
    low, high = report["outageBudgetHours"]
    minutes = ", ".join(str(m) for m in SCHEDULE_MINUTES)
    budget = (
        f"Tracebuzz retries a failed delivery after {minutes} minutes, then disables the "
        f"webhook: an outage longer than about {low:.0f} hours (at most {high:.0f}, as the "
        "spec's table can be read) loses events and needs the webhook re-enabled by saving "
        "it in Tracebuzz."
    )
    verdict = "healthy" if report["ok"] else "something is wrong"
    return [budget, (verdict, "green" if report["ok"] else "bold red")]


def retention_checks(retention: dict[str, Any] | None) -> list[dict[str, str]]:
    """`serve --retain`: the window, the last pass and the archive's size and room; a warning
    when the last pass failed (``retention``: what ``questions.retention_facts`` found)."""
    if not retention:
        return []
    last = retention.get("lastPass") or {}
    window = duration(retention.get("window"))
    archive = (
        f"{retention.get('archiveFiles', 0)} day files, "
        f"{human_size(retention.get('archiveBytes', 0))} in {retention.get('archiveDir')}"
    )
    if retention.get("archiveFreeBytes") is not None:
        archive += f" ({human_size(retention['archiveFreeBytes'])} free)"
    if last.get("error"):
        since = retention.get("lastOk") or "never"
        return [
            {
                "check": "retention",
                "status": "warn",
                "message": f"the last pass ({last.get('finishedAt')}) failed: {last['error']}; "
                f"the last pass that worked: {since}; window {window}; {archive}",
            }
        ]
    message = (
        f"window {window}; last pass {last.get('finishedAt')}: {last.get('deleted', 0)} events "
        f"archived and deleted; {archive}"
    )
    return [{"check": "retention", "status": "ok", "message": message}]


# doctor's checks as `doctor --notify` sends them: the receiver's alert of the same meaning.
ALERT_OF = {
    "last delivery": "stale",
    "size cap": "size",
    "retention": "retention",
    "commit": "failing",
}


def alerts_of(report: dict[str, Any]) -> list[Any]:
    """The checks that failed (and the size and retention warnings, which a receiver would
    alert on too) as alerts, each keyed by its check."""
    from tbhook.model.alerts import Alert

    found = []
    for check in report["checks"]:
        name = ALERT_OF.get(check["check"], "doctor")
        warned = check["status"] == "warn" and name in ("size", "retention")
        if check["status"] == "fail" or warned:
            text = f"doctor on {report['database']}: {check['check']}: {check['message']}"
            details = {"check": check["check"], "status": check["status"]}
            found.append(Alert(name, check["check"], text, details))
    return found
