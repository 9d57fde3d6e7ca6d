"""Serve tbhook's receiver (or a no-op ASGI app) on a chosen uvicorn loop/http stack.

Used by the benchmarks to measure the ceiling and the effect of uvloop/httptools:
    python bench/app_variant.py --app tbhook|noop --loop uvloop|asyncio --http httptools|h11 PORT DB
"""

import argparse

import uvicorn

from tbhook.server import Receiver
from tbhook.store import EventStore
from tbhook.writer import BatchWriter


async def noop(scope, receive, send):
    """Read the body and answer 200: the most any ASGI receiver on this stack can do."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = b'{"ok": true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--app", choices=["tbhook", "noop"], default="tbhook")
    parser.add_argument("--loop", default="uvloop")
    parser.add_argument("--http", default="httptools")
    parser.add_argument("port", type=int)
    parser.add_argument("db")
    args = parser.parse_args()
    writer = None
    app = noop
    if args.app == "tbhook":
        writer = BatchWriter(EventStore.open(args.db))
        writer.start()
        app = Receiver(writer)
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, loop=args.loop, http=args.http,
        lifespan="off", access_log=False, log_level="warning",
    )
    if writer:
        writer.close()


if __name__ == "__main__":
    main()
