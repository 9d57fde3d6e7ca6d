"""The receiver: `tbhook serve`, built and run from one ``Settings`` by ``run``.

The modules, each with one job:

- ``settings``: what it was told (and ``Auth``, the custom header);
- ``app``: the ASGI app Tracebuzz posts to (limits, parsing, the answer after the commit);
- ``parser``: parsing large bodies off the event loop, in a worker process;
- ``writer``: the group-commit writer, in a process of its own;
- ``protocol``: the HTTP guards uvicorn lacks (deadlines, header limits, shedding);
- ``server``: uvicorn with tbhook's settings, the listening socket, the open-file limit;
- ``forwarder``: `--forward-to`, on a thread of its own;
- ``metrics``, ``log``: what it counts and what it says;
- ``processes``: what its helper processes share with it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from tbhook import __version__
from tbhook.errors import TbhookError
from tbhook.model.times import duration
from tbhook.receiver import server
from tbhook.receiver.app import Receiver
from tbhook.receiver.log import Handler, Log
from tbhook.receiver.metrics import Counts
from tbhook.receiver.parser import Parser
from tbhook.receiver.protocol import Connections
from tbhook.receiver.settings import Auth, Settings
from tbhook.receiver.watch import MetaState, Watch, kept_state, last_delivery
from tbhook.receiver.writer import BatchWriter, OpenStore
from tbhook.store import Store, is_url, open_store

__all__ = ["Auth", "Settings", "run"]


def run(settings: Settings) -> None:
    """Build the receiver in the order it must be built, serve until SIGINT or SIGTERM, then
    drain, stop and say so. Raises TbhookError for whatever keeps it from starting."""
    log = Log(settings.log_format, quiet=settings.quiet)
    server.check_http_stack()
    counts = _counts(settings)
    committed = threading.Event()  # set after each commit: the forwarder looks for work
    with contextlib.ExitStack() as stack:
        # 1. The helper processes first: forked now, they hold neither the listening socket
        #    nor the database (a receiver killed outright frees its port).
        parser = Parser()
        stack.callback(parser.close)
        writer = BatchWriter(
            OpenStore(settings.db, settings.max_db_size),
            forward_to=settings.forward_to,
            on_commit=committed.set,
            observer=counts.committed,
        )
        stack.callback(writer.close)
        # 2. Then the ports (the receiver's, and the console's with --ui): a receiver that
        #    cannot listen creates no database.
        sock = server.bind(settings.host, settings.port)
        stack.callback(sock.close)
        console_sock = None
        if settings.ui_port is not None:
            console_sock = _console_socket(settings.ui_port)
            stack.callback(console_sock.close)
        # 3. Then the database: created and migrated here, opened again by the writer.
        store = open_store(settings.db, settings.max_db_size, log.warning)
        stack.callback(store.close)
        writer.start()
        warnings = _warnings(settings, store)
        limit, files = server.connection_limit(settings.max_connections)
        if limit < settings.max_connections:
            warnings.append(
                f"Warning: the open-file limit ({files}) leaves room for {limit} connections; "
                "raise it (LimitNOFILE= in the systemd unit, or ulimit -n) for more."
            )
        console_url = None
        if console_sock is not None:  # the console: its own process, never this port
            console_url = _console(settings, sock, console_sock, stack, log)
        watch = _watch(settings, store, log, stack)
        writer.on_replaced = lambda why: watch.writer_died(why) if why else watch.writer_back()
        events, quarantined = store.reads.counts()
        if settings.metrics:
            counts.started_from(store.reads.last_received_at())  # type: ignore[attr-defined]
        forwarder = None
        if settings.forward_to:
            from tbhook.receiver.forwarder import Forwarder  # http.client, only to forward

            headers = {settings.auth.name: settings.auth.value} if settings.auth else {}
            forwarder = Forwarder(  # writes through this process's connection, on its thread
                store,
                settings.forward_to,
                committed,
                headers,
                settings.retry_scale,
                log,
                counts,
            )
            stack.callback(forwarder.close)
        connections = Connections(limit, log, counts)
        stack.callback(connections.log.flush)
        app = Receiver(
            writer,
            auth=settings.auth,
            max_body=settings.max_body,
            log=log,
            body_memory=settings.body_memory,
            parser=parser,
            counts=counts,
            answered=watch.answered,
        )
        stack.callback(app.close)
        banner = _banner(
            settings, store.path, f"{events} events, {quarantined} quarantined", console_url
        )
        _serve(app, connections, sock, writer, forwarder, lambda: banner(log, sock, warnings))
    log.banner(["tbhook stopped; every acknowledged event is stored."], stopped=True)


def _serve(
    app: Receiver,
    connections: Connections,
    sock: socket.socket,
    writer: BatchWriter,
    forwarder: object | None,
    announce: Callable[[], None],
) -> None:
    """uvicorn on the bound socket until a stop signal, the stop signals handled before the
    banner says it is ready (so none is missed)."""
    uvicorn_server = server.Server(server.uvicorn_config(app, connections))
    Handler(app.log).install()  # after uvicorn configured its loggers
    uvicorn_server.drained = writer.detach  # the pipe closes on the loop, which owns it
    if forwarder is not None:
        forwarder.start()  # type: ignore[attr-defined]
    with uvicorn_server.draining_signals():
        announce()
        uvicorn_server.run(sockets=[sock])


def _watch(settings: Settings, store: Store, log: Log, stack: contextlib.ExitStack) -> Watch:
    """The alerts (``--notify``; logged in any case), and the retention passes (``--retain``)."""
    from tbhook.notify import Notifier

    state = MetaState(settings.db, kept_state(store))
    stack.callback(state.close)
    notifier = Notifier(settings.notify, log, state, source=store.path).start()
    stack.callback(notifier.close)
    watch = Watch(
        notifier,
        settings.db,
        cap=settings.max_db_size,
        stale=settings.stale,
        archive_dir=settings.archive_dir,
        every=settings.watch_every,
        last_delivery=last_delivery(store),
        breaches=_breaches(settings, notifier, store),
    )
    if settings.retain and settings.archive_dir:
        from tbhook.receiver.retention import Retention, describe

        def done(result: dict[str, Any]) -> None:
            if result.get("error") or result.get("deleted"):
                say = log.warning if result.get("error") else log.notice
                say(describe(result, settings.retain or 0), retention=result)
            watch.retention_pass(result)

        retention = Retention(
            settings.db,
            settings.archive_dir,
            settings.retain,
            settings.prune_every,
            settings.max_db_size,
            done,
        )
        watch.wake_retention = retention.wake
        retention.start()
        stack.callback(retention.close)
    watch.writer_back()  # its writer is running: a `writer` alert an earlier run left resolves
    watch.start()
    stack.callback(watch.close)
    return watch


def _breaches(settings: Settings, notifier: Any, store: Store) -> Any:
    """With --sla, what watches the waits past their target (``receiver.breaches``), from
    the tail's cursor before the first delivery."""
    if settings.queue is None:
        return None
    from tbhook.receiver.breaches import Breaches

    return Breaches(notifier, settings.queue, time.time(), store.tail.start())


def _counts(settings: Settings) -> Counts:
    """What the receiver counts: for GET /metrics with --metrics (prometheus_client is
    imported only then), nothing otherwise."""
    if not settings.metrics:
        return Counts()
    from tbhook.receiver.metrics import Metrics  # prometheus_client: about 55 ms

    backend = "postgresql" if is_url(settings.db) else "sqlite"
    return Metrics(settings.db, backend, __version__)


def _warnings(settings: Settings, store: Store) -> list[str]:
    warnings = [w for w in (store.durability_warning(),) if w]
    with contextlib.suppress(TbhookError):  # at the cap already: doctor is told anyway
        store.record_size_cap()
    if not settings.auth and not server.is_loopback(settings.host):
        warnings.insert(
            0,
            f"Warning: listening on {settings.host} with no --header-name/--header-value: "
            "anyone who can reach this port can write events.",
        )
    return warnings


def _console_socket(port: int) -> socket.socket:
    """The console's port for `serve --ui`, bound before the database is created: a port in
    use stops the receiver from starting with a sentence that names it, and nothing made."""
    try:
        return server.bind("127.0.0.1", port)
    except TbhookError as exc:
        raise TbhookError(f"{exc} (the console's --ui-port)") from None


def _console(
    settings: Settings,
    receiving: socket.socket,
    sock: socket.socket,
    stack: contextlib.ExitStack,
    log: Any,
) -> str:
    """`serve --ui`: the console on 127.0.0.1 (``sock``, bound by ``_console_socket`` before
    the database is created), in a process of its own that dies with the receiver and writes
    its warnings into the receiver's log. A console that stops is started again (the receiver
    keeps the socket, so the port stays its), and the log says so. Its URL."""
    import subprocess

    from tbhook.processes import start_python

    port = sock.getsockname()[1]
    host, own = receiving.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    args = ["--db", settings.db, "--fd", str(sock.fileno()), "--port", str(port)]
    args += ["--receiver", f"http://{shown}:{own}/", "--log-format", settings.log_format]

    # The token by the environment, never the command line (which `ps` shows anyone).
    token = {"TBHOOK_UI_TOKEN": settings.ui_token} if settings.ui_token else {}

    def start() -> subprocess.Popen:
        # Its own session: Ctrl+C in the terminal stops the receiver, which stops the
        # console; the console never stops first and looks as if it had failed. Its
        # warnings (refusals, shedding) are lines of this log, in its format.
        return start_python(
            "tbhook.console.__main__:main",
            args,
            keep=[sock.fileno()],
            env=token,
            own_session=True,
            stdout=subprocess.DEVNULL,
        )

    running = [start()]
    stopping = threading.Event()

    def watch() -> None:
        """Start the console again when it stops, after 2, 4... up to 60 s (back to 2 s
        once it has run for a minute)."""
        failures = 0
        while True:
            started = time.monotonic()
            code = running[0].wait()
            if stopping.is_set():
                return
            failures = 1 if time.monotonic() - started > 60 else failures + 1
            delay = min(60, 2**failures)
            log.warning(
                f"the console stopped (exit {code}); starting it again in {delay} s",
                console=port,
                exit=code,
            )
            if stopping.wait(delay):
                return
            running[0] = start()
            if stopping.is_set():  # the receiver began stopping meanwhile
                running[0].terminate()
                return

    watcher = threading.Thread(target=watch, name="tbhook console watch", daemon=True)
    watcher.start()

    def stop() -> None:
        stopping.set()
        process = running[0]
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        watcher.join(5)

    stack.callback(stop)
    return f"http://127.0.0.1:{port}/"


def _banner(
    settings: Settings, database: str, counts: str, console: str | None = None
) -> Callable[[Log, socket.socket, list[str]], None]:
    """The lines a starting receiver prints (one JSON object with --log-format json)."""

    def say(log: Log, sock: socket.socket, warnings: list[str]) -> None:
        bound_host, bound_port = sock.getsockname()[:2]
        shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        url = f"http://{shown_host}:{bound_port}/"
        lines = [
            f"tbhook {__version__} receiving on {url} (any path)",
            f"  database: {database} ({counts})",
        ]
        if settings.auth:
            lines.append(f"  requires header: {settings.auth.name}")
        if settings.forward_to:
            lines.append(f"  forwarding new events to: {settings.forward_to}")
        if settings.retain:
            lines.append(
                f"  keeping {duration(settings.retain)} of events; older ones archived to "
                f"{settings.archive_dir}, then deleted"
            )
        if settings.notify:
            lines.append(f"  alerts to: {len(settings.notify)} URL(s) (--notify)")
        metrics = f"{url}metrics" if settings.metrics else None
        lines.append(f"  health: {url}healthz" + (f", metrics: {metrics}" if metrics else ""))
        if console:
            asks = " (sign in with TBHOOK_UI_TOKEN)" if settings.ui_token else ""
            lines.append(f"  console: {console}{asks}")
        log.banner(
            [*lines, *warnings, "Press Ctrl+C to stop."],
            url=url,
            database=database,
            requiresHeader=settings.auth.name if settings.auth else None,
            forwardTo=settings.forward_to,
            retainSeconds=settings.retain,
            archiveDir=settings.archive_dir,
            notifyUrls=len(settings.notify) or None,
            metrics=metrics,
            console=console,
            consoleToken=bool(settings.ui_token) if console else None,
            warnings=warnings or None,
        )

    return say
