"""The tbhook command line: options in, errors out as ``Error: ...``. No SQL, no HTTP here.

The layers: ``options`` (what every command shares), ``read`` (the log), ``dev`` (the developer
loop), ``ops`` (running it for months); ``serve`` is here. Output goes through
``tbhook.output``; data through ``tbhook.store``."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from typing import Annotated, Optional

import typer

from tbhook import __version__
from tbhook.cli import dev, ops, quarantine, read
from tbhook.cli.options import (
    DEFAULT_DB,
    DbOption,
    LogFormat,
    TbhookCommand,
    in_range,
    parse_size,
    reported_errors,
)
from tbhook.errors import TbhookError

app = typer.Typer(
    help="Receive, keep and read Tracebuzz webhooks.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

SPEED_UPS = ("orjson", "uvloop", "httptools")  # compiled; tbhook works without each
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _version(value: bool) -> None:
    if value:
        from importlib.util import find_spec

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
    "send": "POST samples or recorded events.",
    "generate": "Realistic, deterministic test events.",
    "replay": "Re-send stored bodies to a URL.",
    "doctor": "A health report, for cron or a monitor.",
    "backup": "A consistent copy while it runs.",
    "prune": "Archive, then delete old events.",
    "merge": "Fold another receiver's log into this one.",
    "import": "Load NDJSON or a JSON array.",
}


@app.command(cls=TbhookCommand, short_help=SUMMARIES["serve"])
def serve(
    db: DbOption = DEFAULT_DB,
    host: Annotated[str, typer.Option(metavar="ADDRESS", help="Address to listen on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int,
        typer.Option(
            metavar="PORT", help="Port (0 picks a free one).", callback=in_range(0, 65535)
        ),
    ] = 8080,
    header_name: Annotated[
        Optional[str],
        typer.Option(
            envvar="TBHOOK_HEADER_NAME", metavar="NAME", help="Custom header Tracebuzz must send."
        ),
    ] = None,
    header_value: Annotated[
        Optional[str],
        typer.Option(
            envvar="TBHOOK_HEADER_VALUE",
            metavar="SECRET",
            help="Its secret content (prefer the env var).",
            show_default=False,
        ),
    ] = None,
    max_body: Annotated[
        int,
        typer.Option(
            metavar="BYTES", help="Largest body accepted, in bytes.", callback=in_range(1)
        ),
    ] = 1024 * 1024,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No line per delivery.")] = False,
    max_db_size: Annotated[
        Optional[str],
        typer.Option(
            metavar="SIZE",
            help="Cap the database file (e.g. 500M, 2G); past it, deliveries get 503.",
            callback=lambda value: parse_size(value, "--max-db-size"),
        ),
    ] = None,
    forward_to: Annotated[
        Optional[str],
        typer.Option(metavar="URL", help="Also pass each new event on to this URL (your app)."),
    ] = None,
    retry_scale: Annotated[
        float,
        typer.Option(
            metavar="FACTOR",
            help="Scale the forward retry schedule (0.001: minutes become 60 ms).",
            callback=in_range(0.000001),
        ),
    ] = 1.0,
    max_connections: Annotated[
        int,
        typer.Option(
            metavar="N",
            callback=in_range(1),
            help="Open connections; past this the oldest one without a complete request is "
            "closed (lowered to fit the open-file limit).",
        ),
    ] = 4096,
    body_memory: Annotated[
        str,
        typer.Option(
            metavar="SIZE",
            help="Request bodies held in memory at once, over all connections; past it, 503.",
        ),
    ] = "64M",
    metrics: Annotated[
        bool,
        typer.Option("--metrics", help="Answer GET /metrics for Prometheus (no secret needed)."),
    ] = False,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format",
            metavar="human|json",
            help="human: a line per delivery and warning; json: one JSON object per line.",
        ),
    ] = LogFormat.human,
) -> None:
    """Receive Tracebuzz webhooks and append every delivery to the database.

    GET /healthz answers 200 only while a delivery can be committed (503 and the reason
    otherwise); any other GET answers 200, for Tracebuzz's test of the URL."""
    from tbhook import server
    from tbhook.log import Log
    from tbhook.store import open_store
    from tbhook.writer import BatchWriter

    auth = _auth(header_name, header_value)
    memory = parse_size(body_memory, "--body-memory") or 0
    if forward_to and not forward_to.startswith(("http://", "https://")):
        raise typer.BadParameter(
            f"{forward_to!r} is not an http:// or https:// URL", param_hint="'--forward-to'"
        )
    log = Log(log_format.value, quiet=quiet)
    with reported_errors():
        server.check_http_stack()
        # Before the socket and the database are opened: the parser's and the writer's
        # processes are forked now, so they hold neither (a killed receiver frees its port).
        parser = server.Parser()
        writer = BatchWriter.for_target(db, max_db_size, forward_to=forward_to)  # type: ignore[arg-type]
        # The port first: a receiver that cannot listen creates no database file.
        try:
            sock = server.bind(host, port)
        except BaseException:
            parser.close()
            writer.close()
            raise
        try:
            store = open_store(db, max_db_size, log.warning)  # type: ignore[arg-type]
            writer.start()
            warnings = [w for w in (store.durability_warning(),) if w]
            events, quarantined = store.counts()
            with contextlib.suppress(TbhookError):  # at the cap already: doctor is told anyway
                store.record_size_cap()
            counts = f"{events} events, {quarantined} quarantined"
            tally = _metrics(store) if metrics else None
        except BaseException:
            sock.close()
            parser.close()
            writer.close()
            if "store" in locals():
                store.close()
            raise
    limit, files = server.connection_limit(max_connections)
    if limit < max_connections:
        warnings.append(
            f"Warning: the open-file limit ({files}) leaves room for {limit} connections; "
            "raise it (LimitNOFILE= in the systemd unit, or ulimit -n) for more."
        )
    try:
        server.serve(
            store,
            sock,
            auth=auth,
            max_body=max_body,
            log=log,
            counts=tally,
            on_ready=lambda: _announce(
                log, store, counts, sock, host, auth, forward_to, warnings, metrics
            ),
            forward_to=forward_to,
            retry_scale=retry_scale,
            max_connections=limit,
            body_memory=memory,
            parser=parser,
            writer=writer,
        )
    finally:
        store.close()
    log.banner(["tbhook stopped; every acknowledged event is stored."], stopped=True)


def _metrics(store):  # noqa: ANN001, ANN202 - prometheus_client is imported only for --metrics
    from tbhook.metrics import Metrics

    tally = Metrics(store.target, store.dialect.name, __version__)
    tally.started_from(store.last_received_at())
    return tally


def _announce(log, store, counts, sock, host, auth, forward_to, warnings, metrics) -> None:  # noqa: ANN001
    from tbhook import server

    bound_host, bound_port = sock.getsockname()[:2]
    shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    url = f"http://{shown_host}:{bound_port}/"
    lines = [
        f"tbhook {__version__} receiving on {url} (any path)",
        f"  database: {store.path} ({counts})",
    ]
    if auth:
        lines.append(f"  requires header: {auth.name}")
    elif not server.is_loopback(host):
        warnings = [
            f"Warning: listening on {host} with no --header-name/--header-value: "
            "anyone who can reach this port can write events.",
            *warnings,
        ]
    if forward_to:
        lines.append(f"  forwarding new events to: {forward_to}")
    lines.append(f"  health: {url}healthz" + (f", metrics: {url}metrics" if metrics else ""))
    log.banner(
        [*lines, *warnings, "Press Ctrl+C to stop."],
        url=url,
        database=store.path,
        requiresHeader=auth.name if auth else None,
        forwardTo=forward_to,
        metrics=f"{url}metrics" if metrics else None,
        warnings=warnings or None,
    )


def _auth(name: Optional[str], value: Optional[str]):  # noqa: ANN202 - lazy server import
    from tbhook.server import Auth

    if not name and not value:
        return None
    if not name or not value:
        raise typer.BadParameter(
            "give both --header-name and --header-value, or neither",
            param_hint="'--header-name' / '--header-value'",
        )
    if not _TOKEN.match(name):
        raise typer.BadParameter(
            f"{name!r} is not a valid HTTP header name", param_hint="'--header-name'"
        )
    return Auth(name, value)


# The other commands live in their own modules; this is where they join the app.
for command in (
    read.events,
    read.event,
    read.tail,
    read.person,
    read.case,
    read.cases,
    read.export,
    read.stats,
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
