"""Alerts on the command line: `notify test`, the options serve and doctor share (`--notify`,
`--stale`, `--retain`), and doctor's failures sent as alerts (`doctor --notify`)."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tbhook.cli.options import TbhookCommand, http_url
from tbhook.model.times import parse_duration


def _notify(help: str) -> Any:
    """The --notify option (repeatable, or TBHOOK_NOTIFY), as ``help`` tells its command's."""
    option = typer.Option("--notify", envvar="TBHOOK_NOTIFY", metavar="URL", help=help)
    return Annotated[Optional[list[str]], option]


NotifyOption = _notify(
    "POST alerts here as JSON with a text field (a Slack or Teams incoming webhook shows it); "
    "repeat for several."
)
DoctorNotifyOption = _notify(
    "Also send each failed check as an alert here (as serve --notify does), once, and its "
    "resolution: for cron on another host."
)


def urls(values: Optional[list[str]]) -> tuple[str, ...]:
    """The --notify URLs, each checked."""
    return tuple(http_url(value, "--notify") or "" for value in values or [])


def duration_of(value: Optional[str], option: str) -> Optional[int]:
    """A --stale/--retain/--prune-every duration in seconds (a usage error in words)."""
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"'{option}'") from None
    if seconds <= 0:
        raise typer.BadParameter(f"{value!r} is no time at all", param_hint=f"'{option}'")
    return seconds


def archive_dir(retain: Optional[int], directory: Optional[str]) -> Optional[str]:
    """--retain needs --archive-dir, an existing directory this user can write (and the other
    way round)."""
    if retain is None and directory is None:
        return None
    if directory is None:
        raise typer.BadParameter(
            "--retain archives what it deletes: give --archive-dir DIR too",
            param_hint="'--archive-dir'",
        )
    if retain is None:
        raise typer.BadParameter(
            "--archive-dir is where --retain archives old events: give --retain too (e.g. 90d)",
            param_hint="'--retain'",
        )
    if not os.path.isdir(directory):
        raise typer.BadParameter(
            f"{directory} is not a directory (create it first)", param_hint="'--archive-dir'"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise typer.BadParameter(
            f"{directory} is not writable by this user", param_hint="'--archive-dir'"
        )
    return directory


def prune_every(retain: Optional[int], every: Optional[str]) -> Optional[int]:
    """--prune-every in seconds: only with --retain, whose passes it spaces."""
    if every is not None and retain is None:
        raise typer.BadParameter(
            "--prune-every is how often --retain runs a pass: give --retain too (e.g. 90d)",
            param_hint="'--retain'",
        )
    return duration_of(every, "--prune-every")


app = typer.Typer(
    help="Alerts: try a --notify URL before trusting it (serve --notify and doctor --notify "
    "send to it).",
    short_help="Send a test alert to a --notify URL.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command(
    "test", cls=TbhookCommand, short_help="Send a sample alert; say what the URL answered."
)
def test(
    target: Annotated[str, typer.Argument(metavar="URL", help="Where alerts would be sent.")],
) -> None:
    """Send a sample alert to URL and say what it answered (exit 1 unless a 2xx)."""
    import time

    from tbhook.errors import TbhookError
    from tbhook.model.text import clean
    from tbhook.notify import payload, send_once

    http_url(target, "URL")
    message = payload(
        "test",
        "firing",
        "a test alert from `tbhook notify test`: alerts sent here will look like this one",
        {},
        time.time(),
    )
    try:
        status, body = send_once(target, message)
    except TbhookError as exc:
        sys.stderr.write(f"Error: no answer from {clean(str(exc))}\n")
        raise typer.Exit(1) from None
    shown = clean(body[:200].decode("utf-8", "replace").strip()) or "(an empty body)"
    if 200 <= status < 300:
        sys.stdout.write(f"Sent a test alert to {target}: it answered {status} {shown}\n")
        return
    sys.stderr.write(f"Error: {target} answered {status} {shown}: alerts sent there are lost\n")
    raise typer.Exit(1)


def state_file(db: str) -> Path:
    """Where `doctor --notify` keeps what it sent for this database, between runs (cron)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    digest = hashlib.sha256(db.encode()).hexdigest()[:16]
    return Path(base) / "tbhook" / f"doctor-alerts-{digest}.json"


def send_doctor_alerts(report: dict[str, Any], targets: tuple[str, ...], db: str) -> None:
    """Each failed check of doctor's report as an alert firing, each one that passes again as
    resolved: what a dead receiver cannot say about itself, said from elsewhere."""
    from tbhook.model.health import alerts_of
    from tbhook.model.targets import shown
    from tbhook.notify import FileState, Notifier

    notifier = Notifier(targets, _Stderr(), FileState(state_file(db)), source=shown(db))
    failing = {alert.key: alert for alert in alerts_of(report)}
    checks = {check["check"]: check for check in report["checks"]}
    for name, key in notifier.firing():
        if key not in failing:  # said as what cleared, not as what fired
            now = checks.get(key)
            said = f" ({now['message']})" if now and now.get("message") else ""
            text = f"doctor on {report['database']}: the {key} check passes again{said}"
            notifier.resolve(name, key, text, {"check": key, "status": "ok"})
    for alert in failing.values():
        notifier.fire(alert.name, alert.key, alert.text, alert.details)
    notifier.start()
    if not notifier.flush(60):
        sys.stderr.write("Warning: some alerts could not be sent; they are tried on the next run\n")
    notifier.close(1)


class _Stderr:
    def warning(self, message: str, **facts: Any) -> None:
        from tbhook.model.text import clean

        if not message.startswith("tbhook on "):  # an alert: doctor's table says it already
            sys.stderr.write(f"Warning: {clean(message)}\n")


def unreadable(db: str, why: str) -> dict[str, Any]:
    """A doctor report of one failed check: the database could not be read at all."""
    from tbhook.model.targets import shown

    check = {"check": "database", "status": "fail", "message": f"cannot be read: {why}"}
    return {"database": shown(db), "checks": [check], "ok": False}
