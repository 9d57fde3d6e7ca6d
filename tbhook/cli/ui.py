"""`tbhook ui`: the console's options, parsed into ``console.Settings``; the console
(``tbhook.console``, imported only by this command) does the rest."""

from __future__ import annotations

import os
import re
import sys
from typing import Annotated, Optional

import typer

from tbhook.cli.access import reading
from tbhook.cli.asking import asks
from tbhook.cli.options import (
    DEFAULT_DB,
    DbOption,
    MaxConnectionsOption,
    PortOption,
    http_url,
    reported_errors,
    whole_number,
)
from tbhook.model.query import Asked

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> str:
    """A typer callback: a number and a unit (90s, 30m, 12h, 7d), kept as text."""
    if not re.fullmatch(r"[0-9]{1,6}[smhd]", text) or int(text[:-1]) == 0:
        raise typer.BadParameter(f"{text!r} is not a duration: a number and a unit, like 30m, "
                                 "12h, 7d or 90s")  # fmt: skip
    return text


def seconds(text: str) -> int:
    return int(text[:-1]) * UNITS[text[-1]]


def _addresses(values: Optional[list[str]]) -> Optional[list[str]]:
    """A typer callback: --trusted-proxy's values, each an IP address."""
    import ipaddress

    for value in values or ():
        try:
            ipaddress.ip_address(value.strip())
        except ValueError:
            raise typer.BadParameter(
                f"{value!r} is not an IP address (the proxy's, as the console sees it "
                "connect: 127.0.0.1 for one on this machine)"
            ) from None
    return values


def _host_names(names: Optional[list[str]]) -> Optional[list[str]]:
    """A typer callback: --allow-host's names, each a host name without a port."""
    for name in names or ():
        if not name.strip() or any(c in name for c in " /:@"):
            raise typer.BadParameter(
                f"{name!r} is not a host name (tbhook.example.com, without a port)"
            )
    return names


@asks("ui")
def ui(
    db: DbOption = DEFAULT_DB,
    host: Annotated[
        str,
        typer.Option(
            metavar="ADDRESS",
            help="Address to listen on; anything but loopback needs --token.",
        ),
    ] = "127.0.0.1",
    port: PortOption = 8081,
    token: Annotated[
        Optional[str],
        typer.Option(
            envvar="TBHOOK_UI_TOKEN",
            metavar="SECRET",
            help="Every request must bring it (Authorization: Bearer, or the sign-in form's "
            "cookie). Prefer the env var.",
            show_default=False,
        ),
    ] = None,
    allow_host: Annotated[
        Optional[list[str]],
        typer.Option(
            "--allow-host",
            metavar="NAME",
            help="Another name it may be reached by (a proxy's: tbhook.example.com); repeatable.",
            callback=_host_names,
        ),
    ] = None,
    trusted_proxy: Annotated[
        Optional[list[str]],
        typer.Option(
            "--trusted-proxy",
            metavar="ADDRESS",
            help="A proxy in front (127.0.0.1): for its requests, the client is the address "
            "it adds to X-Forwarded-For (ignored from anyone else); repeatable.",
            callback=_addresses,
        ),
    ] = None,
    receiver: Annotated[
        str,
        typer.Option(
            metavar="URL",
            help="The receiver: the health page asks it how it is; copy-as-curl posts there.",
        ),
    ] = "http://127.0.0.1:8080/",
    https: Annotated[
        bool,
        typer.Option(
            "--https",
            help="Browsers reach it over HTTPS only (a proxy in front ends TLS): its cookies "
            "are Secure, and a form must come from an https:// page.",
        ),
    ] = False,
    session_idle: Annotated[
        str,
        typer.Option(
            metavar="DURATION",
            callback=_duration,
            help="Signed out after this long without a request (an open live page counts as "
            "use): 30m, 2h.",
        ),
    ] = "30m",
    session_max: Annotated[
        str,
        typer.Option(
            metavar="DURATION",
            callback=_duration,
            help="Signed out this long after signing in, in any case: 12h, 7d.",
        ),
    ] = "12h",
    max_connections: MaxConnectionsOption = 1024,
    max_streams: Annotated[
        int,
        typer.Option(
            metavar="N",
            **whole_number(1),
            help="Live pages (each open list follows new events); past this one more is "
            "answered 503.",
        ),
    ] = 500,
    asked: Asked = Asked(),
) -> None:
    """The console in a browser: deliveries live, any event in full, people, cases, the
    report's charts, quarantine, health. A reader, on its own port."""
    from tbhook import console  # starlette, jinja2, uvicorn: only for the console

    http_url(receiver, "--receiver")
    if token is None and os.environ.get("TBHOOK_UI_TOKEN") == "":
        token = ""  # set to nothing (typer takes that as unset): refused below, in words
    settings = console.Settings(
        db=db,
        host=host,
        port=port,
        token=token,
        allowed_hosts=tuple(allow_host or ()),
        zone=asked.zone,
        receiver=receiver,
        https=https,
        proxies=tuple(value.strip() for value in trusted_proxy or ()),
        max_connections=max_connections,
        max_streams=max_streams,
        session_idle=seconds(session_idle),
        session_lifetime=seconds(session_max),
    )
    try:
        settings.check()
    except console.SettingError as exc:
        raise typer.BadParameter(str(exc), param_hint=exc.option) from None
    with reported_errors():
        with reading(db):
            pass  # a missing or foreign database is an error now, not on the first page

        def announce(url: str) -> None:
            sys.stderr.write(f"tbhook console on {url} (a reader of {db})\n")
            if token:
                sys.stderr.write("  sign in with the token it was given\n")
            sys.stderr.write("Press Ctrl+C to stop.\n")
            sys.stderr.flush()

        console.run(settings, announce)
