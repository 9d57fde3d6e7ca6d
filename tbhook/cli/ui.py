"""`tbhook ui`: the console's options, parsed into ``console.Settings``; the console
(``tbhook.console``, imported only by this command) does the rest."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from tbhook.cli.access import reading
from tbhook.cli.asking import asks
from tbhook.cli.options import DEFAULT_DB, DbOption, PortOption, http_url, reported_errors
from tbhook.model.query import Asked


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
        ),
    ] = None,
    receiver: Annotated[
        str,
        typer.Option(
            metavar="URL",
            help="The receiver: the health page asks it how it is; copy-as-curl posts there.",
        ),
    ] = "http://127.0.0.1:8080/",
    fd: Annotated[
        Optional[int],
        typer.Option(hidden=True, help="A listening socket inherited from serve --ui."),
    ] = None,
    asked: Asked = Asked(),
) -> None:
    """The console in a browser: deliveries live, any event in full, people, cases, the
    report's charts, quarantine, health. A reader, on its own port."""
    from tbhook import console  # starlette, jinja2, uvicorn: only for the console

    http_url(receiver, "--receiver")
    for name in allow_host or ():
        if not name.strip() or any(c in name for c in " /:@"):
            raise typer.BadParameter(
                f"{name!r} is not a host name (tbhook.example.com, without a port)",
                param_hint="'--allow-host'",
            )
    settings = console.Settings(
        db=db,
        host=host,
        port=port,
        token=token or None,
        allowed_hosts=tuple(allow_host or ()),
        zone=asked.zone,
        receiver=receiver,
        fd=fd,
    )
    try:
        settings.check()
    except Exception as exc:  # noqa: BLE001 - TbhookError: a usage mistake here
        hint = "'--token'" if token else "'--host' / '--token'"
        raise typer.BadParameter(str(exc), param_hint=hint) from None
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
