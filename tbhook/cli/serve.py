"""`tbhook serve`: the receiver's options, parsed into ``receiver.Settings``; the receiver
(``tbhook.receiver``, imported only by this command) does the rest."""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Annotated, Any, Optional

import typer

from tbhook.cli.alerting import NotifyOption, duration_of, urls
from tbhook.cli.alerting import archive_dir as archive_dir_of
from tbhook.cli.asking import asks
from tbhook.cli.options import (
    DEFAULT_DB,
    DbOption,
    LogFormat,
    MaxConnectionsOption,
    PortOption,
    db_size,
    decimal_number,
    http_url,
    parse_size,
    reported_errors,
    whole_number,
)
from tbhook.model.query import Asked

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name (RFC 9110)


@asks("serve")
def serve(
    db: DbOption = DEFAULT_DB,
    host: Annotated[str, typer.Option(metavar="ADDRESS", help="Address to listen on.")] = (
        "127.0.0.1"
    ),
    port: PortOption = 8080,
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
        typer.Option(metavar="BYTES", help="Largest body accepted, in bytes.", **whole_number(1)),
    ] = 1024 * 1024,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No line per delivery.")] = False,
    max_db_size: Annotated[
        Optional[str],
        db_size("Cap the database file (500M, 2G, ...); past it, deliveries get 503."),
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
            **decimal_number(0.000001),
        ),
    ] = 1.0,
    max_connections: MaxConnectionsOption = 4096,
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
    ui: Annotated[
        bool,
        typer.Option(
            "--ui",
            help="Also run the console (tbhook ui) on 127.0.0.1, in its own process; the "
            "banner prints its URL.",
        ),
    ] = False,
    ui_port: Annotated[
        int,
        typer.Option(
            metavar="PORT",
            help="The console's port, with --ui (0 picks a free one).",
            **whole_number(0, 65535),
        ),
    ] = 8081,
    retain: Annotated[
        Optional[str],
        typer.Option(
            metavar="AGE",
            help="Keep this much (90d, 26w): older events, by their timestamp, are archived "
            "to --archive-dir, then deleted, in the background; near --max-db-size the oldest "
            "days go first.",
        ),
    ] = None,
    archive_dir: Annotated[
        Optional[str],
        typer.Option(
            metavar="DIR",
            help="Where --retain archives: a file per day, tbhook-YYYY-MM-DD.ndjson.gz "
            "(`tbhook import` reads them).",
        ),
    ] = None,
    prune_every: Annotated[
        str, typer.Option(metavar="AGE", help="How often --retain runs a pass.")
    ] = "1h",
    notify: NotifyOption = None,
    stale: Annotated[
        Optional[str],
        typer.Option(
            metavar="AGE",
            help="Alert when no delivery came for this long (e.g. 2h on a busy account).",
        ),
    ] = None,
    asked: Asked = Asked(),
) -> None:
    """Receive Tracebuzz webhooks and append every delivery to the database.

    GET /healthz answers 200 only while a delivery can be committed (503 and the reason
    otherwise); any other GET answers 200, for Tracebuzz's test of the URL."""
    from tbhook import receiver  # uvicorn and the rest: about 80 ms, only for serve

    http_url(forward_to, "--forward-to")
    _own_port(ui_port if ui else None, port)
    retain_seconds = duration_of(retain, "--retain")
    settings = receiver.Settings(
        db=db,
        host=host,
        port=port,
        auth=_auth(header_name, header_value),
        max_body=max_body,
        quiet=quiet,
        max_db_size=max_db_size,  # type: ignore[arg-type]  # the callback made it bytes
        forward_to=forward_to,
        retry_scale=retry_scale,
        max_connections=max_connections,
        body_memory=parse_size(body_memory, "--body-memory") or 0,
        metrics=metrics,
        log_format=log_format.value,
        ui_port=ui_port if ui else None,
        ui_token=_ui_token() if ui else None,
        notify=urls(notify),
        stale=duration_of(stale, "--stale"),
        retain=retain_seconds,
        archive_dir=archive_dir_of(retain_seconds, archive_dir),
        prune_every=float(duration_of(prune_every, "--prune-every") or 3600),
        queue=_breaching(asked),
    )
    # Looked at often enough: a quarter of --stale; four times a second under a cap that
    # --retain keeps (a PRAGMA: microseconds), so a pass starts long before the cap.
    every = min(10.0, settings.stale / 4) if settings.stale else 10.0
    if settings.max_db_size and settings.retain:
        every = min(every, 0.25)
    settings = dataclasses.replace(settings, watch_every=every)
    with reported_errors():
        receiver.run(settings)


def _breaching(asked: Asked) -> Any:
    """With --sla, the waits `serve` alerts past their target: every one, on any source."""
    if asked.sla is None:
        if asked.clock is not None:
            raise typer.BadParameter(
                "--hours counts the --sla targets in business hours: give --sla too",
                param_hint="'--hours'",
            )
        return None
    from tbhook.model.queue import Waiting
    from tbhook.queue_feed import Asking

    return Asking(Waiting(), None, asked.clock, asked.sla)


def _auth(name: Optional[str], value: Optional[str]) -> Any:
    """The custom header to require, or None; both or neither must be given."""
    from tbhook.receiver import Auth  # see serve

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


def _ui_token() -> Optional[str]:
    """`serve --ui`: the console asks for TBHOOK_UI_TOKEN when the environment has one (the
    banner says so), checked as `tbhook ui` checks it; an empty one is refused."""
    from tbhook.console import token_problem  # the settings only, not the web stack

    token = os.environ.get("TBHOOK_UI_TOKEN")
    problem = token_problem(token) if token is not None else None
    if problem:
        raise typer.BadParameter(f"for the console: {problem}", param_hint="TBHOOK_UI_TOKEN")
    return token


def _own_port(ui_port: int | None, port: int) -> None:
    """The console's port is never the receiver's (0 picks a free one for each)."""
    if ui_port and ui_port == port:
        raise typer.BadParameter(
            f"{ui_port} is the receiver's --port: the console listens on a port of its own",
            param_hint="'--ui-port'",
        )
