"""A second connection a process opens to its database keeps the first one's locks: the
receiver holds several (its own, the alerts' state, the size watch) while its writer and a
retention pass, other processes, open and close theirs."""

import os
import subprocess
import sys

from conftest import event_body

from tbhook.model.events import parse
from tbhook.store import Delivery
from tbhook.store.sqlite import SQLiteStore


def test_opening_a_second_connection_keeps_the_write_ahead_log_of_the_first(db_path):
    first = SQLiteStore.open(db_path)
    first.conn.execute("PRAGMA wal_autocheckpoint = 0")  # the log stays until a checkpoint
    first.append([Delivery(event_body(caseId=1), parse(event_body(caseId=1)))])
    second = SQLiteStore.open(db_path)  # a descriptor closed here dropped every lock
    assert os.path.exists(f"{db_path}-wal")
    # Another process opens and closes a connection: were it the last one it saw, it would
    # check the log into the file and delete it, under this process's open connections.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "c.execute('SELECT count(*) FROM events').fetchall(); c.close()",
            str(db_path),
        ],
        check=True,
    )
    assert os.path.exists(f"{db_path}-wal")  # it saw this process's connections
    assert second.reads.count() == 1 and first.reads.count() == 1
    second.close()
    first.close()
