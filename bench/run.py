"""`make bench`: each figure as a ratio against a baseline measured in the same run.

Needs wrk (Debian package `wrk`): `apt-get install wrk`. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DURATION = os.environ.get("BENCH_DURATION", "5s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def wrk(port: int, connections: int, close: bool = False) -> dict:
    threads = min(2, connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{DURATION}", "--latency",
           "-s", str(HERE / "post.lua"), f"http://127.0.0.1:{port}/"]
    if close:
        cmd[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "ok": total - (int(errors.group(1)) if errors else 0),
        "p50": _latency(out, "50%"),
        "p99": _latency(out, "99%"),
    }


def _latency(out: str, pct: str) -> float:
    value, unit = re.search(rf"{pct}\s+([\d.]+)(us|ms|s)", out).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def ingest(app: str, loop: str, http: str, connections: int, close: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "app_variant.py"), "--app", app, "--loop", loop,
             "--http", http, str(port), str(db)]
        )
        try:
            wait_listening(port)
            result = wrk(port, connections, close)
        finally:
            proc.terminate()
            proc.wait(30)
        if app == "tbhook":
            rows = sqlite3.connect(db).execute("SELECT count(*) FROM events").fetchone()[0]
            assert rows >= result["ok"], f"{rows} rows < {result['ok']} acknowledged"
            result["rows"] = rows
        return result


def main() -> None:
    if not shutil.which("wrk"):
        sys.exit("make bench needs wrk: apt-get install wrk")
    print(f"# tbhook bench, {time.strftime('%Y-%m-%d')}, nproc={os.cpu_count()}, {DURATION} per run")
    print("| figure | req/s | p50 ms | p99 ms | baseline | ratio |")
    print("|---|---|---|---|---|---|")
    for connections in (1, 64):
        ceiling = ingest("noop", "uvloop", "httptools", connections)
        fast = ingest("tbhook", "uvloop", "httptools", connections)
        slow = ingest("tbhook", "asyncio", "h11", connections)
        for name, result, base_name, base in (
            (f"no-op ceiling, {connections} conn", ceiling, "-", None),
            (f"tbhook uvloop+httptools, {connections} conn", fast, "ceiling", ceiling),
            (f"tbhook asyncio+h11, {connections} conn", slow, "ceiling", ceiling),
            (f"uvloop+httptools gain, {connections} conn", fast, "asyncio+h11", slow),
        ):
            ratio = f"{result['rps'] / base['rps']:.2f}x" if base else "-"
            print(f"| {name} | {result['rps']:.0f} | {result['p50']:.2f} | {result['p99']:.2f} "
                  f"| {base_name} | {ratio} |")


if __name__ == "__main__":
    main()
