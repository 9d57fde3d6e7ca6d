"""The tbhook command line: options in, errors out as ``Error: ...``. No SQL, no HTTP here.

The modules: ``options`` (what every command shares), ``serve`` (the receiver's options),
``read`` (the log), ``report`` (the support team's numbers), ``quarantine``, ``dev`` (the
developer loop), ``ops`` (running it for months). Output goes through ``tbhook.output``; data
through ``tbhook.store``; the receiver is ``tbhook.receiver``."""

from __future__ import annotations

import sqlite3
from importlib.util import find_spec
from typing import Annotated, Optional

import typer

from tbhook import __version__
from tbhook.cli import alerting, dev, ops, quarantine, read, report, serve, ui
from tbhook.cli import queue as waiting
from tbhook.cli.options import TbhookCommand, TbhookGroup

app = typer.Typer(
    cls=TbhookGroup,
    help="Receive, keep and read Tracebuzz webhooks.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

SPEED_UPS = ("orjson", "uvloop", "httptools")  # compiled; tbhook works without each


def _version(value: bool) -> None:
    if value:
        missing = [name for name in SPEED_UPS if find_spec(name) is None]
        speed = (
            "speed-ups: " + ", ".join(SPEED_UPS)
            if not missing
            else "pure Python, without " + ", ".join(missing)
        )
        typer.echo(f"tbhook {__version__} (SQLite {sqlite3.sqlite_version}; {speed})")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
) -> None:
    """Receive, keep and read Tracebuzz webhooks."""


# The one-line summary of each command in `tbhook --help` (whole, never cut mid-sentence).
SUMMARIES = {
    "serve": "Receive webhooks into the database.",
    "events": "The filtered log, newest first.",
    "event": "One event in full, body included.",
    "tail": "Watch events arrive.",
    "person": "Who a person is now, after merges.",
    "case": "One case's timeline and metrics.",
    "cases": "One row per case, with its metrics.",
    "export": "Every matching event, as CSV or NDJSON.",
    "stats": "Counts by event, sender, type, source, day.",
    "report": "Response and resolution times, backlog, per period.",
    "queue": "Who is waiting for an agent now, against an SLA.",
    "ui": "The console: deliveries live in a browser, and charts.",
    "send": "POST samples or recorded events.",
    "generate": "Realistic, deterministic test events.",
    "replay": "Re-send stored bodies to a URL.",
    "doctor": "A health report, for cron or a monitor.",
    "backup": "A consistent copy while it runs.",
    "prune": "Archive, then delete old events.",
    "merge": "Fold another receiver's log into this one.",
    "import": "Load NDJSON or a JSON array.",
}


# The other commands live in their own modules; this is where they join the app.
for command in (
    serve.serve,
    read.events,
    read.event,
    read.tail,
    read.person,
    read.case,
    read.cases,
    read.export,
    read.stats,
    report.report,
    waiting.queue,
    ui.ui,
    dev.send,
    dev.generate,
    dev.replay,
    ops.doctor,
    ops.backup,
    ops.prune,
    ops.merge,
):
    app.command(cls=TbhookCommand, short_help=SUMMARIES[command.__name__])(command)
app.command("import", cls=TbhookCommand, short_help=SUMMARIES["import"])(dev.import_)
app.add_typer(quarantine.app, name="quarantine")
app.add_typer(alerting.app, name="notify")
