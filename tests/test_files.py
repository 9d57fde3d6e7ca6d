"""The files tbhook writes, against real files: never the database (in any spelling), never a
device or a pipe replaced by a file, private from the first byte, and what a killed command
left behind found, named and removed. A refused command leaves nothing behind."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import event_body
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.events import parse
from tbhook.store import Delivery
from tbhook.store.sqlite import SQLiteStore

runner = CliRunner(env={"COLUMNS": "200"})


def run(*args, input=None):
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


def tbhook(*args: str, timeout: float = 30, **kwargs) -> subprocess.CompletedProcess:
    """The real program in a process of its own: a hang fails the test at ``timeout``."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    kwargs.setdefault("capture_output", "stdout" not in kwargs)
    return subprocess.run(
        [sys.executable, "-m", "tbhook", *args], text=True, timeout=timeout, **kwargs
    )


def fill(db, count=5, pad=0, first_case=0):
    store = SQLiteStore.open(db)
    bodies = [
        event_body(caseId=first_case + i, timestamp=1_700_000_000 + i, note="x" * pad + str(i))
        for i in range(count)
    ]
    for start in range(0, count, 100):
        store.append([Delivery(b, parse(b)) for b in bodies[start : start + 100]])
    store.close()


def counts(db):
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("events", "quarantine")
        ]
    finally:
        conn.close()


# -- 1. import never reads the database itself ------------------------------------------------


def spellings(db: Path) -> dict[str, str]:
    """The database by every name it can be given (its -wal and -shm exist: it is open)."""
    (db.parent / "link.db").symlink_to(db)
    os.link(db, db.parent / "hard.db")
    return {
        "relative": db.name,
        "./": f"./{db.name}",
        "absolute": str(db),
        "dotdot": f"../{db.parent.name}/{db.name}",
        "symlink": "link.db",
        "hard link": "hard.db",
        "-wal": f"{db.name}-wal",
        "-shm": f"{db.name}-shm",
    }


def test_import_refuses_the_database_itself_by_any_name(db_path, monkeypatch):
    fill(db_path)
    conn = sqlite3.connect(db_path)  # as a receiver keeps it: its -wal and -shm exist
    conn.execute("SELECT count(*) FROM events").fetchone()
    monkeypatch.chdir(db_path.parent)
    size = db_path.stat().st_size
    for how, name in spellings(db_path).items():
        result = run("import", name, "--db", db_path.name)
        assert result.exit_code == 1, (how, result.output)
        assert result.stderr.startswith(f"Error: {name} is the database"), (how, result.stderr)
        assert "import reads events from another file" in result.stderr
    with open(db_path, "rb") as stdin:  # `tbhook import - < tbhook.db`
        done = tbhook("import", "-", "--db", db_path.name, stdin=stdin, cwd=db_path.parent)
    assert done.returncode == 1 and "is the database itself" in done.stderr
    conn.close()
    assert counts(db_path) == [5, 0] and db_path.stat().st_size == size


def test_import_of_another_sqlite_file_points_to_merge(db_path, tmp_path):
    other = tmp_path / "other.db"
    fill(other)
    result = run("import", str(other), "--db", str(db_path))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {other} is a SQLite database, not NDJSON or a JSON array; to fold another "
        f"tbhook log into this one, run `tbhook merge {other}`\n"
    )
    assert not db_path.exists()


# -- 2. devices, pipes and links -------------------------------------------------------------


def test_export_to_dev_stdout_streams_into_the_pipe_and_ends(db_path):
    fill(db_path)
    for target in ("/dev/stdout", "-", "/dev/fd/1", "/proc/self/fd/1"):
        done = tbhook("export", "-o", target, "-f", "ndjson", "--db", str(db_path))
        assert done.returncode == 0, (target, done.stderr)
        assert len(done.stdout.splitlines()) == 5, target
    assert not list(db_path.parent.glob(".*tmp"))


def test_export_to_dev_stdout_appends_where_the_shell_said_to(db_path, tmp_path):
    fill(db_path)
    out = tmp_path / "log.ndjson"
    out.write_text("kept\n")
    with open(out, "a") as appending:  # `>> log.ndjson`: reopening by name would truncate it
        done = tbhook("export", "-o", "/dev/stdout", "-f", "ndjson", "--db", str(db_path),
                      stdout=appending, stderr=subprocess.PIPE)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "kept" and len(lines) == 6


def test_export_writes_into_a_fifo_and_a_link_to_a_device_and_leaves_them_as_they_were(
    db_path, tmp_path
):
    fill(db_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    done = tbhook("export", "-o", str(fifo), "-f", "ndjson", "--db", str(db_path), timeout=60)
    reader.join(30)
    assert done.returncode == 0, done.stderr
    assert len(got[0].splitlines()) == 5 and stat.S_ISFIFO(fifo.lstat().st_mode)
    null = tmp_path / "null"
    null.symlink_to("/dev/null")
    done = tbhook("export", "-o", str(null), "--force", "--db", str(db_path))
    assert done.returncode == 0, done.stderr
    assert null.is_symlink() and os.readlink(null) == "/dev/null"


@pytest.mark.parametrize("kind", ["/dev/stdout", "fifo", "link to /dev/null"])
def test_backup_and_prune_archive_refuse_a_device_or_a_pipe(db_path, tmp_path, kind):
    fill(db_path)
    target = kind
    if kind == "fifo":
        target = str(tmp_path / "pipe")
        os.mkfifo(target)
    elif kind.startswith("link"):
        target = str(tmp_path / "null")
        os.symlink("/dev/null", target)
    backup = tbhook("backup", target, "--db", str(db_path), stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE)  # fmt: skip
    prune = tbhook("prune", "--before", "2030-01-01", "--archive", target, "--yes",
                   "--db", str(db_path))  # fmt: skip
    for done in (backup, prune):
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith(f"Error: {target} is a"), done.stderr
        assert "not a file" in done.stderr and "give a file name" in done.stderr
        assert done.stdout == ""
    assert prune.stderr.endswith("nothing was deleted\n")
    assert counts(db_path) == [5, 0]
    assert not stat.S_ISREG(os.lstat(target).st_mode)  # never replaced by a file


def test_a_link_to_a_file_is_written_through_and_stays_a_link(db_path, tmp_path):
    fill(db_path)
    real = tmp_path / "exports" / "today.csv"
    real.parent.mkdir()
    real.write_text("yesterday\n")
    link = tmp_path / "latest.csv"
    link.symlink_to(real)
    assert run("export", "-o", str(link), "--force", "--db", str(db_path)).exit_code == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text().startswith("id,receivedAt") and real.stat().st_mode & 0o777 == 0o600
    dangling = tmp_path / "backup.db"
    dangling.symlink_to(tmp_path / "copies.db")  # to a file not there yet
    result = run("backup", str(dangling), "--db", str(db_path))
    assert result.exit_code == 0, result.output
    assert dangling.is_symlink() and counts(tmp_path / "copies.db") == [5, 0]


# -- 3. a refused command leaves nothing behind and names what it refused ----------------------


def test_a_refused_export_over_another_database_leaves_no_side_files(db_path, tmp_path):
    fill(db_path)
    other = tmp_path / "other.db"
    fill(other)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run("export", "--output", str(other), "--force", "--db", str(db_path))
    assert result.exit_code == 1 and "is another tbhook database" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no other.db-wal, -shm


def test_serve_with_the_console_s_port_in_use_creates_no_database(tmp_path):
    db = tmp_path / "new.db"
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = tbhook("serve", "--port", "0", "--ui", "--ui-port", str(port), "--db", str(db))
    assert done.returncode == 1
    assert done.stderr == (
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(the console's --ui-port)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_empty_file_name_is_named_and_nothing_is_written(db_path, tmp_path):
    fill(db_path)
    work = tmp_path / "work"
    work.mkdir()
    for args, named in (
        (["export", "--output", ""], "--output"),
        (["backup", ""], "DEST"),  # Path("") is ".": this once wrote a backup here
        (["prune", "--before", "2030-01-01", "--yes", "--archive", ""], "--archive"),
    ):
        done = tbhook(*args, "--db", str(db_path), cwd=work)
        assert done.returncode == 1, (args, done.stderr)
        assert done.stderr.startswith(f"Error: {named} is empty (''): give a file name"), args
    assert list(work.iterdir()) == [] and counts(db_path) == [5, 0]


# -- 4. temporaries: private from the first byte, found when their command was killed ----------


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # renamed into place meanwhile
        return 0


def killed_midway(args: list[str], directory: Path) -> Path:
    """Run tbhook with ``args``, kill -9 it once its temporary in ``directory`` has bytes,
    and return the temporary it left."""
    proc = subprocess.Popen([sys.executable, "-m", "tbhook", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            found = [p for p in directory.glob(f".*{proc.pid}.tmp") if size(p)]
            if found:
                os.kill(proc.pid, signal.SIGKILL)
                break
            assert proc.poll() is None, "it finished before it could be killed"
            time.sleep(0.001)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return found[0]


def test_a_killed_backup_leaves_a_private_copy_that_doctor_names_and_the_next_backup_removes(
    tmp_path,
):
    db = tmp_path / "big.db"
    fill(db, count=300, pad=100_000)  # 30 MB: the copy takes a while
    old = os.umask(0o022)  # the usual umask: what SQLite would create -rw-r--r--
    try:
        left = killed_midway(["backup", str(tmp_path), "--db", str(db)], tmp_path)
    finally:
        os.umask(old)
    assert left.stat().st_mode & 0o777 == 0o600
    pid = left.name.rsplit("-", 1)[1].removesuffix(".tmp")
    doctor = tbhook("doctor", "--db", str(db), "-f", "json")
    assert doctor.returncode == 0, doctor.stderr  # a warning, not a failure
    (check,) = [c for c in json.loads(doctor.stdout)["checks"] if c["check"] == "temporary files"]
    assert check["status"] == "warn" and check["message"].startswith(f"{left} (")
    assert f"left by `tbhook backup` (process {pid})" in check["message"]
    done = tbhook("backup", str(tmp_path), "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert f"Removed {left}, left by `tbhook backup` (process {pid})" in done.stderr
    assert not list(tmp_path.glob(".*tbhook-backup*"))  # its journal too
    assert "temporary files" not in tbhook("doctor", "--db", str(db), "-f", "json").stdout


def test_a_killed_export_s_temporary_is_removed_by_the_next_export(tmp_path):
    db = tmp_path / "big.db"
    fill(db, count=1500, pad=100_000)  # 150 MB: an export writes 30 MB faster than a busy CI looks
    out = tmp_path / "out" / "events.ndjson"
    out.parent.mkdir()
    left = killed_midway(["export", "-o", str(out), "-f", "ndjson", "--db", str(db)], out.parent)
    assert left.stat().st_mode & 0o777 == 0o600 and not out.exists()
    done = tbhook("export", "-o", str(out), "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert f"Removed {left}, left by `tbhook export`" in done.stderr
    assert sorted(out.parent.iterdir()) == [out]


def dead_pid() -> int:
    """The pid of a process that has ended (as a killed command's has)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_prune_removes_what_a_killed_prune_left_and_not_what_others_are_writing(db_path, tmp_path):
    fill(db_path)
    archive = tmp_path / "old.ndjson.gz"
    stale = tmp_path / f".old.ndjson.gz.tbhook-prune-{dead_pid()}.tmp"
    stale.write_bytes(b"half an archive")
    running = tmp_path / f".old.ndjson.gz.tbhook-prune-{os.getpid()}.tmp"  # alive: this test
    running.write_bytes(b"being written")
    others = tmp_path / f".events.csv.tbhook-export-{dead_pid()}.tmp"  # another command's
    others.write_bytes(b"an export")
    done = tbhook("prune", "--before", "2030-01-01", "--archive", str(archive), "--yes",
                  "--db", str(db_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"Removed {stale}, left by `tbhook prune`" in done.stderr
    assert not stale.exists() and running.exists() and others.exists()
    assert len(gzip.decompress(archive.read_bytes()).splitlines()) == 5
    assert archive.stat().st_mode & 0o777 == 0o600


def test_a_killed_export_on_two_cores_leaves_no_copy_in_the_temporary_directory(tmp_path):
    db = tmp_path / "big.db"
    fill(db, count=1500, pad=100_000)  # the worker's half takes long enough to be seen
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {**os.environ, "TMPDIR": str(temporary), "TBHOOK_SPLIT_ROWS": "10"}
    proc = subprocess.Popen([sys.executable, "-m", "tbhook", "export", "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)  # fmt: skip
    try:
        # Nobody reads its stdout: it blocks there, with the worker forked and writing.
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        deadline = time.monotonic() + 60
        while not children.read_text().strip():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.001)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the assertion above says why
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert list(temporary.iterdir()) == []
