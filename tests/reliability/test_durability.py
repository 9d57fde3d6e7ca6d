"""2: with synchronous=FULL, every acknowledged batch is committed before its 200 goes out."""

import asyncio
import json
import threading
from dataclasses import dataclass

import uvicorn
from conftest import Worker, event_body, request, run_all

from tbhook.receiver.app import Receiver
from tbhook.receiver.server import bind
from tbhook.receiver.writer import BatchWriter
from tbhook.store.sqlite import SQLiteStore


class RecordingStore(SQLiteStore):
    """The real store, in the writer process, noting each committed batch in a shared log
    file before the batch's outcomes go back to the server."""

    log_path: str

    def commit(self):
        super().commit()
        self.commits = getattr(self, "commits", 0) + 1

    def append_rows(self, params, readable, forward_to=None):
        before = getattr(self, "commits", 0)
        stored = super().append_rows(params, readable, forward_to)
        # append returns only once its transaction is committed, and before any reply
        assert self.commits == before + 1 and not self.db.conn.in_transaction
        note(self.log_path, "commit", [s.id for s in stored])
        return stored


def note(path, kind, value):
    with open(path, "a") as log:  # O_APPEND: one line at a time, in causal order
        log.write(json.dumps([kind, value]) + "\n")


@dataclass(frozen=True)
class Recording:
    """Opens a RecordingStore in the writer process (it travels there pickled)."""

    db: str
    log_path: str

    def __call__(self):
        store = RecordingStore.open(self.db)
        store.log_path = self.log_path
        return store


def test_every_200_is_sent_after_its_batch_commits(db_path, tmp_path):
    log_path = str(tmp_path / "order.log")
    recording = Recording(str(db_path), log_path)

    store = SQLiteStore.open(db_path)
    conn = store.db.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsync at every commit
    writer = BatchWriter(recording)
    writer.start()
    receiver = Receiver(writer)

    async def app(scope, receive, send):
        async def noting_send(message):
            if message["type"] == "http.response.body" and message.get("body"):
                note(log_path, "reply", json.loads(message["body"])["id"])
            await send(message)

        await receiver(scope, receive, noting_send)

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.01)
        results = run_all(
            [
                Worker(lambda i=i: request(port, "POST", "/", event_body(caseId=i)))
                for i in range(64)
            ]
        )
    finally:
        server.should_exit = True
        thread.join(10)
        writer.close()
    assert [r.status for r in results] == [200] * 64
    committed: set[int] = set()
    replies = 0
    with open(log_path) as lines:
        log = [json.loads(line) for line in lines]
    for kind, value in log:
        if kind == "commit":
            committed.update(value)
        else:
            assert value in committed, f"event {value} was acknowledged before its commit"
            replies += 1
    assert replies == 64
    batches = sum(1 for kind, _ in log if kind == "commit")
    assert batches < 64  # concurrent requests shared commits (group commit)
    store.close()
