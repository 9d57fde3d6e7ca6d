"""``python -m tbhook.console``: the console on its own, without the command line (how
`serve --ui` starts it, on a socket it bound and hands down). `tbhook ui` is the same
console with every option and its checks."""

from __future__ import annotations

import argparse
import os
import sys

from tbhook.console import Settings, run
from tbhook.errors import TbhookError
from tbhook.model.query import QueryError, read


def main(argv: list[str] | None = None) -> None:
    """Read ``argv`` into the console's Settings and serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tbhook.console", description=__doc__)
    parser.add_argument("--db", required=True, help="the database it reads")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--fd", type=int, help="a listening socket to serve on, inherited")
    parser.add_argument("--receiver", default="http://127.0.0.1:8080/")
    parser.add_argument("--tz", default=os.environ.get("TBHOOK_TZ"), help="as tbhook ui --tz")
    parser.add_argument("--log-format", choices=("human", "json"), default="human")
    args = parser.parse_args(argv)
    try:
        zone = read("ui", {"tz": args.tz}).zone
    except QueryError as exc:
        parser.error(f"argument --tz: {exc.sentence}")
    settings = Settings(
        db=args.db,
        token=os.environ.get("TBHOOK_UI_TOKEN"),  # as `tbhook ui` reads it; serve checked it
        host=args.host,
        port=args.port,
        fd=args.fd,
        receiver=args.receiver,
        zone=zone,
        log_format=args.log_format,
    )

    def announce(url: str) -> None:
        if args.fd is None:  # under serve --ui, the receiver's banner names it
            sys.stderr.write(f"tbhook console on {url} (a reader of {args.db})\n")
            sys.stderr.flush()

    try:
        run(settings, announce)
    except TbhookError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
