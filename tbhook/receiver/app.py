"""The ASGI app Tracebuzz posts to, built from a writer passed in: reads each request within
its limits, parses it, hands it to the writer, and answers once it is committed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tbhook.errors import StoreUnavailable
from tbhook.model.events import Event
from tbhook.model.words import describe_parsed
from tbhook.processes import release_memory
from tbhook.receiver.log import Log, Throttled
from tbhook.receiver.metrics import Counts, Metrics
from tbhook.receiver.parser import Parser
from tbhook.receiver.protocol import RETRY_AFTER_SECONDS
from tbhook.receiver.settings import MEBIBYTE, Auth
from tbhook.receiver.writer import BatchWriter
from tbhook.store import Delivery, Stored

DEFAULT_MAX_BODY = MEBIBYTE
BODY_MEMORY = 64 * MEBIBYTE  # request bodies held at once, over all connections
ALLOW = b"GET, HEAD, POST"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
HEALTH_CACHE_SECONDS = 1.0  # a commit check answers every /healthz for this long
HEALTH_TIMEOUT_SECONDS = 5.0  # a check the writer has not answered by then is a failure


class BodyBudget:
    """How many bytes of request bodies are held in memory at once, over all connections.

    A thousand senders of 1 MiB bodies would otherwise hold a gigabyte; past the budget a
    request is answered 503 before its body is read. One body is always let in, however large
    (``--max-body`` bounds it), so a budget smaller than a body cannot refuse everything.
    """

    def __init__(self, limit: int = BODY_MEMORY):
        self.limit = limit
        self.used = 0
        self.refused = 0
        self._high = 0  # the most held since memory was last handed back

    def take(self, size: int) -> bool:
        if self.used and self.used + size > self.limit:
            self.refused += 1
            return False
        self.used += size
        self._high = max(self._high, self.used)
        return True

    def give(self, size: int) -> None:
        self.used -= size
        if self.used == 0 and self._high >= 8 * 1024 * 1024:
            self._high = 0
            release_memory()


class Receiver:
    """The ASGI app Tracebuzz posts to. A 200 goes out only after the event's batch commits."""

    def __init__(
        self,
        writer: BatchWriter,
        *,
        auth: Auth | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        log: Log | None = None,
        body_memory: int = BODY_MEMORY,
        parser: Parser | None = None,
        counts: Counts | None = None,
        clock: Callable[[], float] = time.monotonic,
        answered: Callable[[int, str], None] | None = None,
    ):
        self.writer = writer
        self.auth = auth
        self.max_body = max_body
        self.log = log or Log()  # warnings always; a line per delivery unless it is quiet
        self.budget = BodyBudget(body_memory)
        self._throttled = Throttled(self.log)
        self.parser = parser or Parser(fork=False)  # the caller closes a parser it passes
        self.counts = counts or Counts()
        self.clock = clock  # for how long a commit check answers /healthz
        # Told of every answer to a delivery, with its cause (serve --notify: `failing`).
        self.answered = answered or (lambda status, cause: None)
        # GET /metrics (--metrics): read on a thread of its own, off the loop.
        self.metrics = counts if isinstance(counts, Metrics) else None
        self._scrapes = ThreadPoolExecutor(1, thread_name_prefix="tbhook-metrics")
        self._health: tuple[float, str | None] | None = None  # (when, why not)
        self._health_check: asyncio.Future[str | None] | None = None

    def close(self) -> None:
        self._throttled.flush()
        if self.metrics:
            self._scrapes.submit(self.metrics.close).result()
        self._scrapes.shutdown(wait=True)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        if method in ("GET", "HEAD"):
            await self._get(scope["path"], send, head=method == "HEAD")
        elif method != "POST":
            self.counts.refused(405)
            await _respond(send, 405, _error(f"method {method} not allowed"), allow=True)
        elif self.auth and not self.auth.accepts(scope["headers"]):
            self.counts.refused(401)
            self.answered(401, f"missing or wrong {self.auth.name} header")
            self._throttled(
                "401",
                f"rejected (401): missing or wrong {self.auth.name} header{_client(scope)}",
                status=401,
                client=_client_address(scope),
            )
            await _respond(send, 401, _error(f"missing or wrong {self.auth.name} header"))
        else:
            try:
                await self._receive_post(scope, receive, send)
            except Exception as exc:  # a bug: uvicorn answers 500, which Tracebuzz counts
                self.answered(500, f"a bug in tbhook: {type(exc).__name__}: {exc}")
                raise

    async def _get(self, path: str, send: Callable, head: bool) -> None:
        """/healthz for a load balancer, /metrics for Prometheus (with --metrics); any other
        path is Tracebuzz testing the URL as a webhook is saved: 200. None needs the secret,
        and none is a delivery."""
        if path == HEALTH_PATH:
            why = await self.health()
            if why is None:
                await _respond(send, 200, {"status": "ok"}, head=head)
            else:
                payload = {"status": "unavailable", "reason": why}
                await _respond(send, 503, payload, head=head, retry_after=True)
        elif path == METRICS_PATH and self.metrics:
            loop = asyncio.get_running_loop()
            body, content_type = await loop.run_in_executor(self._scrapes, self.metrics.exposition)
            await _send_bytes(send, 200, body, content_type.encode(), head=head)
        else:
            await _respond(send, 200, {"status": "ok"}, head=head)

    async def health(self) -> str | None:
        """Why the store cannot commit now, or None: the writer's commit check, shared by
        every /healthz in the same second (a flood of them costs one commit a second)."""
        if self._health and self.clock() - self._health[0] < HEALTH_CACHE_SECONDS:
            return self._health[1]
        if self._health_check is None:
            self._health_check = asyncio.ensure_future(self._check())
        return await asyncio.shield(self._health_check)

    async def _check(self) -> str | None:
        try:
            why = await asyncio.wait_for(self.writer.check(), HEALTH_TIMEOUT_SECONDS)
        except asyncio.TimeoutError:
            why = f"the store did not answer within {HEALTH_TIMEOUT_SECONDS:g} s"
        except Exception as exc:  # a check that cannot be made is a failed one, not a 500
            why = f"could not check the store: {type(exc).__name__}: {exc}"
        self._health, self._health_check = (self.clock(), why), None
        self.counts.checked(why)
        return why

    async def _receive_post(self, scope: dict, receive: Callable, send: Callable) -> None:
        too_large = _error(f"body larger than {self.max_body} bytes")
        declared = _declared_length(scope["headers"])
        if declared > self.max_body:
            self._too_large(scope, f"{declared} bytes")
            await _respond(send, 413, too_large)
            return
        held = _Held(self.budget)
        try:
            if not held.take(declared):
                await self._refuse_memory(send)
                return
            try:
                body = await _read_body(receive, self.max_body, held)
            except _Disconnected:
                return
            except _OverBudget:
                await self._refuse_memory(send)
                return
            if body is None:
                self._too_large(scope, "a chunked body")
                await _respond(send, 413, too_large)
                return
            await self._store(scope, body, send)
        finally:
            held.release()

    def _too_large(self, scope: dict, size: str) -> None:
        """Count and log a 413 as a 503 is: Tracebuzz retries a refused delivery 10 times,
        then disables the webhook, so the operator must hear of it."""
        self.counts.refused(413)
        self.answered(413, f"{size} is over --max-body ({self.max_body} bytes)")
        self._throttled(
            "413",
            f"answered 413: {size} on {_safe_path(scope['path'])}{_client(scope)} is over "
            f"--max-body ({self.max_body} bytes); a Tracebuzz delivery refused 10 times "
            "disables the webhook: raise --max-body if it is one",
            status=413,
            client=_client_address(scope),
        )

    async def _refuse_memory(self, send: Callable) -> None:
        self._busy("memory", f"{self.budget.limit // 2**20} MiB of bodies in flight")
        await _respond(send, 503, _error(_BUSY), retry_after=True, close=True)

    async def _store(self, scope: dict, body: bytes, send: Callable) -> None:
        delivery = Delivery(body, await self.parser.parse(body), path=_safe_path(scope["path"]))
        try:
            stored = await self.writer.write(delivery)
        except StoreUnavailable as exc:
            self._busy("store", f"NOT STORED: {exc}", reason=str(exc))
            await _respond(send, 503, _error(str(exc)), retry_after=True)
            return
        except asyncio.CancelledError:
            # Shutdown ran out of time waiting for this commit (a stalled disk): the event may
            # still commit, but it cannot be acknowledged; the sender retries, dedupe does the rest.
            self._busy("shutdown", "NOT ACKNOWLEDGED: shut down before the commit finished")
            await _respond(
                send, 503, _error("shutting down; try again"), retry_after=True, close=True
            )
            return
        outcome = _outcome(stored)
        self.counts.delivered(outcome)
        self.answered(200, "")
        await _respond(send, 200, _receipt(delivery, stored))
        if not self.log.quiet:  # with --quiet, not even the line is made
            self.log.info(_delivery_line(delivery, stored), **_delivery_facts(delivery, stored))

    def _busy(self, kind: str, why: str, **facts: Any) -> None:
        """Count and log a 503, at most one line of each kind per period (the rest are
        counted in the next line)."""
        self.counts.refused(503, kind)
        self.answered(503, facts.get("reason") or why)
        self._throttled(
            kind, f"answered 503 (Retry-After {RETRY_AFTER_SECONDS} s): {why}", status=503, **facts
        )


_BUSY = "too many request bodies in flight; try again"


def _receipt(delivery: Delivery, stored: Stored) -> dict[str, Any]:
    if stored.quarantined:
        # Its own key: a quarantine row is not event #N.
        return {
            "ok": True,
            "quarantineId": stored.id,
            "duplicate": stored.duplicate,
            "quarantined": True,
            "reason": getattr(delivery.parsed, "reason", ""),
        }
    return {"ok": True, "id": stored.id, "duplicate": stored.duplicate}


def _outcome(stored: Stored) -> str:
    if stored.duplicate:
        return "duplicate"
    return "quarantined" if stored.quarantined else "stored"


def _delivery_facts(delivery: Delivery, stored: Stored) -> dict[str, Any]:
    """The facts of the human line, as fields of the JSON one."""
    parsed = delivery.parsed
    facts: dict[str, Any] = {
        "outcome": _outcome(stored),
        "quarantineId" if stored.quarantined else "id": stored.id,
        "deliveries": stored.deliveries,
        "path": delivery.path,
    }
    if isinstance(parsed, Event):
        facts["event"] = parsed.event
        for key in ("caseId", "personId", "oldPersonId", "newPersonId"):
            if parsed.values.get(key) is not None:
                facts[key] = parsed.values[key]
    else:
        facts["reason"] = parsed.reason
    return facts


def _delivery_line(delivery: Delivery, stored: Stored) -> str:
    line = describe_parsed(delivery.parsed, delivery.path)
    if stored.quarantined:
        line = f"quarantined #{stored.id}, " + line
    if stored.duplicate:
        line += f" [retry: delivery {stored.deliveries} of #{stored.id}]"
    return line


class _Disconnected(Exception):
    pass


class _OverBudget(Exception):
    pass


class _Held:
    """One request's share of the body budget: what it declared, then what actually arrived
    beyond that (a chunked body declares nothing)."""

    def __init__(self, budget: BodyBudget):
        self.budget = budget
        self.size = 0

    def take(self, size: int) -> bool:
        if size and not self.budget.take(size):
            return False
        self.size += size
        return True

    def cover(self, total: int) -> bool:
        return total <= self.size or self.take(total - self.size)

    def release(self) -> None:
        if self.size:
            self.budget.give(self.size)
            self.size = 0


async def _read_body(receive: Callable, limit: int, held: _Held) -> bytes | None:
    """The whole request body, or None as soon as it grows past ``limit``. Raises _OverBudget
    when the body budget cannot cover what has arrived."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        if not held.cover(size):
            raise _OverBudget
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _declared_length(headers: list[tuple[bytes, bytes]]) -> int:
    for key, value in headers:
        if key == b"content-length" and value.isdigit():
            return int(value)
    return 0


def _safe_path(path: str) -> str:
    # A percent-encoded lone surrogate or NUL (%00) must not make the row unstorable
    # (PostgreSQL's text holds no NUL).
    return path.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _client(scope: dict) -> str:
    client = _client_address(scope)
    return f" from {client}" if client else ""


def _client_address(scope: dict) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


async def _respond(
    send: Callable,
    status: int,
    payload: dict[str, Any],
    *,
    head: bool = False,
    allow: bool = False,
    retry_after: bool = False,
    close: bool = False,
) -> None:
    body = json.dumps(payload).encode()
    await _send_bytes(
        send,
        status,
        body,
        b"application/json",
        head=head,
        allow=allow,
        retry_after=retry_after,
        close=close,
    )


async def _send_bytes(
    send: Callable,
    status: int,
    body: bytes,
    content_type: bytes,
    *,
    head: bool = False,
    allow: bool = False,
    retry_after: bool = False,
    close: bool = False,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    if allow:
        headers.append((b"allow", ALLOW))
    if retry_after:
        headers.append((b"retry-after", b"%d" % RETRY_AFTER_SECONDS))
    if status in (401, 413) or close:
        # The body may not have been read; do not try to reuse this connection.
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
