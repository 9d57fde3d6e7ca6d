"""Who is signed in to the console, kept in this process's memory (a restart signs everyone
out): sessions with an idle and an absolute expiry, the CSRF value bound to a session id
(a keyed hash no page can compute), the failed sign-ins of each client address, and the
one-time notices a form leaves for the page it leads to (OWASP's session management and
CSRF cheat sheets)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

IDLE_SECONDS = 30 * 60  # signed out after this long without a request (an open /stream counts)
LIFETIME_SECONDS = 12 * 3600  # and after this long in any case: sign in again each day
MAX_SESSIONS = 1000  # signed-in sessions kept; past it the oldest is signed out
MAX_NOTICES = 1000
NOTICE_SECONDS = 600
SIGN_IN_FAILURES = 10  # wrong tokens from one address within the window, then 429
SIGN_IN_WINDOW_SECONDS = 15 * 60
MAX_ADDRESSES = 10_000  # addresses whose failures are remembered; past it the oldest forgotten
ID_LENGTH = 43  # secrets.token_urlsafe(32)
ID_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def new_id() -> str:
    return secrets.token_urlsafe(32)


def well_formed(value: str) -> bool:
    """A value that could be a session id this console made (anything else is no cookie)."""
    return len(value) == ID_LENGTH and all(c in ID_CHARACTERS for c in value)


@dataclass
class Session:
    created: float
    seen: float
    secure: bool = False  # signed in over HTTPS: valid over HTTPS only
    streams: int = 0  # open /stream requests: a page left open is not idle


class Sessions:
    """The signed-in sessions, and the secret that binds a CSRF value to any session id
    (signed in or not: a visitor who has not signed in has an id too, unstored)."""

    def __init__(
        self,
        idle: float = IDLE_SECONDS,
        lifetime: float = LIFETIME_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle, self.lifetime, self.clock = idle, lifetime, clock
        self._secret = secrets.token_bytes(32)
        self._live: OrderedDict[str, Session] = OrderedDict()
        self._notices: OrderedDict[tuple[str, str], tuple[float, str]] = OrderedDict()
        self._watchers: dict[str, list[Callable[[], None]]] = {}  # told when a session ends
        self._lock = threading.Lock()  # views run in worker threads, the guard on the loop

    def csrf(self, sid: str) -> str:
        """The value every form of this session sends back: a page can set a cookie (cookies
        ignore ports) but cannot compute this without the server's secret."""
        return hmac.new(self._secret, b"csrf\0" + sid.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, sid: str, given: str) -> bool:
        return hmac.compare_digest(
            self.csrf(sid).encode(), given.encode("utf-8", "surrogateescape")
        )

    def start(self, secure: bool = False) -> str:
        """A new signed-in session (always a new id: one a page planted is never promoted);
        ``secure``: signed in over HTTPS, so never valid over plain HTTP."""
        sid = new_id()
        now = self.clock()
        with self._lock:
            ended = self._sweep(now)
            self._live[sid] = Session(now, now, secure)
            while len(self._live) > MAX_SESSIONS:
                ended.append(self._live.popitem(last=False)[0])
        self._tell(ended)
        return sid

    def end(self, sid: str) -> None:
        with self._lock:
            self._live.pop(sid, None)
        self._tell([sid])

    def signed_in(self, sid: str, secure: bool = False) -> bool:
        """Whether ``sid`` is a live signed-in session reached as it was signed in (over
        HTTPS or not); a request through it counts as use."""
        now = self.clock()
        with self._lock:
            session = self._live.get(sid)
            if session is None or session.secure != secure:
                return False
            if not self._expired(session, now):
                session.seen = now
                return True
            del self._live[sid]
        self._tell([sid])
        return False

    def left(self, sid: str) -> float:
        """Seconds before ``sid`` ends in any case (its lifetime), 0 once it has ended: what
        a live page of it may still be sent."""
        now = self.clock()
        with self._lock:
            session = self._live.get(sid)
            if session is None or self._expired(session, now):
                return 0.0
            return session.created + self.lifetime - now

    def on_end(self, sid: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from any thread) when ``sid`` is signed out or pushed out; the
        function that forgets it."""
        with self._lock:
            self._watchers.setdefault(sid, []).append(callback)

        def forget() -> None:
            with self._lock:
                found = self._watchers.get(sid, [])
                if callback in found:
                    found.remove(callback)
                if not found:
                    self._watchers.pop(sid, None)

        return forget

    def _tell(self, ended: list[str]) -> None:
        with self._lock:
            callbacks = [c for sid in ended for c in self._watchers.get(sid, [])]
        for callback in callbacks:
            callback()

    def streaming(self, sid: str, delta: int) -> None:
        """A /stream of this session opened (+1) or closed (-1)."""
        with self._lock:
            session = self._live.get(sid)
            if session is not None:
                session.streams += delta
                session.seen = self.clock()

    def _expired(self, session: Session, now: float) -> bool:
        if now - session.created > self.lifetime:
            return True
        return session.streams <= 0 and now - session.seen > self.idle

    def _sweep(self, now: float) -> list[str]:
        ended = [sid for sid, s in self._live.items() if self._expired(s, now)]
        for sid in ended:
            del self._live[sid]
        return ended

    def notice(self, sid: str, text: str) -> str:
        """Keep ``text`` for this session's next page; the id to name it by in a URL."""
        key = secrets.token_urlsafe(12)
        with self._lock:
            self._notices[(sid, key)] = (self.clock(), text)
            while len(self._notices) > MAX_NOTICES:
                self._notices.popitem(last=False)
        return key

    def take_notice(self, sid: str, key: str) -> str | None:
        """The notice ``key`` of this session, once; None for one unknown, old or another's."""
        with self._lock:
            found = self._notices.pop((sid, key), None)
        if found is None or self.clock() - found[0] > NOTICE_SECONDS:
            return None
        return found[1]


@dataclass
class SignIns:
    """Wrong tokens per client address (an IPv6 address by its /64, which one machine
    usually holds whole): past ``failures`` within ``window`` seconds, every sign-in from it
    is refused, a right token too, until the oldest failure is out of the window."""

    failures: int = SIGN_IN_FAILURES
    window: float = SIGN_IN_WINDOW_SECONDS
    clock: Callable[[], float] = time.monotonic
    _failed: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def wait(self, address: str) -> int:
        """Seconds before ``address`` may try again; 0: now."""
        now = self.clock()
        with self._lock:
            times = self._failed.get(_key(address))
            if times is None:
                return 0
            while times and now - times[0] > self.window:
                times.popleft()
            if len(times) < self.failures:
                return 0
            return max(1, int(times[0] + self.window - now + 0.999))

    def failed(self, address: str) -> int:
        """Count a wrong token from ``address``; what ``wait`` says now."""
        key = _key(address)
        with self._lock:
            times = self._failed.pop(key, None) or deque(maxlen=self.failures)
            times.append(self.clock())
            self._failed[key] = times  # the most recent last
            while len(self._failed) > MAX_ADDRESSES:
                self._failed.popitem(last=False)
        return self.wait(address)


def _key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
