"""The ceiling: a no-op ASGI app that reads the body and answers 200, on tbhook's exact
uvicorn settings (protocol, loop, limits). Usage: python bench/noop.py PORT"""

import sys

from tbhook.receiver.server import Server, bind, uvicorn_config


async def noop(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = b'{"ok": true, "id": 1, "duplicate": false}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    server = Server(uvicorn_config(noop))
    with server.draining_signals():
        server.run(sockets=[bind("127.0.0.1", int(sys.argv[1]))])
