"""The examples in these docs, run for real by cog (`make docs-update`; `make test` checks
that they still say the same): every `$ tbhook ...` block under a cog marker is the output
of that command on the sample log below, at 100 columns.

The sample log: case 500 (a customer message, an agent reply, another customer message, a
close), then person 10 merged into the registered profile 20, then case 501; a body that
could not be read, another that an older tbhook refused and this one can read, and
Tracebuzz's empty test of the URL. Receive times are fixed, so the output never changes.
The report examples run on a second log, three weeks of generated traffic (``REPORTS``).
"""

from __future__ import annotations

import atexit
import json
import os
import shlex
import shutil
import tempfile
from pathlib import Path

from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.events import parse
from tbhook.store import Delivery
from tbhook.store.sqlite import SQLiteStore

WIDTH = 100
T0 = 1_700_000_000  # 2023-11-14T22:13:20Z


def message(n: int, case: int, person: int, own: int, type_id: int, at: int, source: int = 14):
    return {
        "event": "newResult",
        "searchId": 1,
        "uniqueId": n,
        "resultId": n,
        "personId": person,
        "caseId": case,
        "handlerId": 0,
        "sourceId": source,
        "connectionId": 111,
        "typeId": type_id,
        "own": own,
        "timestamp": at,
    }


SAMPLE = [
    message(9001, 500, 10, 0, 4, T0),
    message(9002, 500, 10, 1, 4, T0 + 90),
    message(9003, 500, 10, 0, 3, T0 + 200),
    {
        "event": "caseClosed",
        "searchId": 1,
        "caseId": 500,
        "externalCaseId": None,
        "reasonId": 3,
        "personId": 10,
        "externalPersonId": False,
        "agentId": 7,
        "resultId": 9003,
        "connectionId": 111,
        "timestamp": T0 + 600,
    },
    {"event": "profileMerged", "oldPersonId": 10, "newPersonId": 20, "timestamp": T0 + 700},
    message(9101, 501, 20, 0, 2, T0 + 86_400, source=3),
]
UNREADABLE = [b'{"event": "newResult", "caseId": "12"}', b""]


def _sample(directory: Path) -> Path:
    db = directory / "tbhook.db"
    store = SQLiteStore.open(db)
    for n, payload in enumerate(SAMPLE):
        body = json.dumps(payload, separators=(",", ":")).encode()
        at = f"2026-11-25T23:33:01.{610 + n:03d}Z"
        store.append([Delivery(body, parse(body), received_at=at)])
    for n, body in enumerate(UNREADABLE):
        store.append([Delivery(body, parse(body), received_at=f"2026-11-25T23:33:0{5 + n}.000Z")])
    with store.writing() as conn:  # as an older tbhook kept it: a typeId it refused
        older = json.dumps(message(9201, 502, 30, 0, 9, T0 + 90_000)).encode()
        conn.execute(
            'INSERT INTO quarantine ("receivedAt", "lastReceivedAt", deliveries, path, reason, '
            'body, "bodySha256") VALUES (?, ?, 2, ?, ?, ?, ?)',
            [
                "2026-11-20T08:00:00.000Z",
                "2026-11-20T08:05:00.000Z",
                "/",
                'newResult: "typeId" 9 is not a documented type',
                older,
                __import__("hashlib").sha256(older).digest(),
            ],
        )
    store.close()
    return db


def _support_log(directory: Path) -> Path:
    """Three weeks of a support team's traffic for the report examples: `tbhook generate`
    with seed 7 from Monday 29 April 2024, about an event a minute and a half by day, imported
    as `tbhook import` would."""
    import io

    from tbhook.transfer.generate import Generator
    from tbhook.transfer.importer import import_stream

    db = directory / "support.db"
    lines = []
    for line in Generator(seed=7, start=1_714_370_400, rate=0.0115).lines(20_000):
        event = json.loads(line)
        # Each day's traffic squeezed into 07:00-16:00 UTC (09:00-18:00 in Amsterdam in
        # May), in the same order: people write by day, and some wait over a night.
        at = event["timestamp"]
        day = at - at % 86_400
        event["timestamp"] = day + 7 * 3600 + (at - day) * 3 // 8
        lines.append(json.dumps(event))
    store = SQLiteStore.open(db)
    import_stream(store, io.BytesIO("\n".join(lines).encode()), "support")
    store.close()
    return db


_here = Path(tempfile.mkdtemp(prefix="tbhook-docs-"))
atexit.register(shutil.rmtree, _here, True)
DB = _sample(_here)
REPORTS = _support_log(_here)


def _out(text: str) -> None:
    """Into the document cog is writing (cog exists only while it runs: the logs above are
    also what `make screenshots` shows)."""
    import cog  # type: ignore[import-not-found]

    cog.out(text)


def cli(line: str, columns: int = WIDTH, db: Path = DB) -> None:
    """Write ``$ line`` and what it prints (stdout, then stderr), as a terminal of
    ``columns`` would show it, into the document (run on ``db``: the sample log, or
    ``REPORTS``)."""
    args = shlex.split(line)
    assert args[0] == "tbhook", line
    runner = CliRunner(env={"COLUMNS": str(columns), "TBHOOK_DB": str(db), "NO_COLOR": "1"})
    cwd = os.getcwd()
    os.chdir(_here)
    try:
        result = runner.invoke(app, args[1:], prog_name="tbhook")
    finally:
        os.chdir(cwd)
    out = result.stdout + result.stderr
    _out(f"$ {line}\n" + "\n".join(part.rstrip() for part in out.rstrip("\n").split("\n")))
    _out("\n")


def console(*lines: str, columns: int = WIDTH, db: Path = DB) -> None:
    """A ```console block of ``lines``, each run."""
    _out("```console\n")
    for line in lines:
        cli(line, columns, db)
    _out("```\n")


def help_of(command: str) -> None:
    """The --help of a command, as a ``` block."""
    runner = CliRunner(env={"COLUMNS": "100", "NO_COLOR": "1"})
    result = runner.invoke(app, [*command.split(), "--help"], prog_name="tbhook")
    text = result.stdout
    _out("```\n" + "\n".join(line.rstrip() for line in text.rstrip("\n").split("\n")) + "\n```\n")
