"""A throwaway PostgreSQL server for the tests and the benchmarks: initdb and pg_ctl in a
temporary directory, on a free port of 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def pg_binary(name: str) -> str | None:
    import glob
    import shutil

    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(f"{folder}/{name}"):
            return f"{folder}/{name}"
    return None


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgCluster:
    """A PostgreSQL server in a temporary directory, on a free port of 127.0.0.1. PostgreSQL
    refuses to run as root, so as root it runs as the `postgres` user."""

    def __init__(self):
        import shutil
        import tempfile

        self.initdb, self.pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            raise FileNotFoundError("initdb and pg_ctl")
        self.base = Path(tempfile.mkdtemp(prefix="tbhook-pg-"))
        self.data, self.log = self.base / "data", self.base / "log"
        self.as_pg: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
            self.as_pg = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        self._run([self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust",
                   "-E", "UTF8", "--locale=C.UTF-8"])  # fmt: skip
        self.start()
        self._counter = 0

    def _run(self, cmd: list[str]) -> None:
        done = subprocess.run([*self.as_pg, *cmd], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
            "-c max_connections=300 -c fsync=on -c synchronous_commit=on"
        )
        self._run([self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.log),
                   "-w", "start"])  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run([self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"])

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import psycopg

        self._counter += 1
        name = f"t{os.getpid()}_{self._counter}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def close(self) -> None:
        import shutil

        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
