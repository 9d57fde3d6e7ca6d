"""How a receiver is to run: everything `tbhook serve` was told, checked, in one object."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

MEBIBYTE = 1024 * 1024


@dataclass(frozen=True)
class Auth:
    """The custom header Tracebuzz sends: its name (any case) and its secret value."""

    name: str
    value: str

    def accepts(self, headers: list[tuple[bytes, bytes]]) -> bool:
        wanted = self.name.lower().encode("latin-1")
        sent = next((value for key, value in headers if key == wanted), b"")
        return hmac.compare_digest(sent, self.value.encode("utf-8"))


@dataclass(frozen=True)
class Settings:
    """A receiver's settings (``tbhook serve``'s options, parsed)."""

    db: str
    host: str = "127.0.0.1"
    port: int = 8080
    auth: Auth | None = None
    max_body: int = MEBIBYTE  # the largest body accepted (413 past it)
    quiet: bool = False  # no line per delivery (warnings still)
    max_db_size: int | None = None  # SQLite: past this, deliveries get 503
    forward_to: str | None = None  # pass each new event on to this URL
    retry_scale: float = 1.0  # the forward retry schedule, scaled (tests)
    max_connections: int = 4096  # past this, the oldest idle connection is shed
    body_memory: int = 64 * MEBIBYTE  # bodies held at once, over all connections
    metrics: bool = False  # GET /metrics for Prometheus
    log_format: str = "human"  # or "json"
    ui_port: int | None = None  # also run the console on 127.0.0.1 at this port (0: any)
    ui_token: str | None = None  # its token (TBHOOK_UI_TOKEN): asked for even on loopback
    notify: tuple[str, ...] = ()  # POST alerts here (tbhook.notify)
    stale: int | None = None  # alert when no delivery came for this many seconds
    retain: int | None = None  # archive, then delete, events older than this many seconds
    archive_dir: str | None = None  # ... into day files here
    prune_every: float = 3600.0  # a retention pass this often (sooner near the size cap)
    watch_every: float = 10.0  # stale and size are looked at this often
    queue: Any = None  # --sla: the waits to alert past their target (a queue_feed.Asking)
