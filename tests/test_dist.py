"""The single-file build: `make dist`, then run it with a plain Python, no virtualenv."""

import csv
import io
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import request, sample_bytes

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pyz(tmp_path_factory):
    built = subprocess.run(
        ["make", "-C", str(ROOT), "dist"], capture_output=True, text=True, timeout=600
    )
    assert built.returncode == 0, built.stderr[-2000:]
    home = tmp_path_factory.mktemp("plain")
    target = home / "tbhook.pyz"
    shutil.copy(ROOT / "dist" / "tbhook.pyz", target)
    return target


def plain_python() -> str:
    """The interpreter under the virtualenv: what a machine with only Python has."""
    base = Path(sys.base_prefix) / "bin" / "python3"
    return str(base if base.exists() else shutil.which("python3"))


def run_pyz(pyz, *args, **kwargs):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(pyz.parent), "LANG": "C.UTF-8"}
    return subprocess.Popen(
        [plain_python(), str(pyz), *args],
        cwd=pyz.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_the_single_file_serves_receives_and_exports(pyz):
    assert not (pyz.parent / "tbhook.db").exists()
    version = run_pyz(pyz, "--version").communicate(timeout=60)[0]
    assert re.match(r"tbhook \d+\.\d+\.\d+ \(SQLite [\d.]+; (speed-ups|pure Python)", version)
    server = run_pyz(pyz, "serve", "--port", "0", "--ui", "--ui-port", "0")
    lines: list[str] = []
    ready = threading.Event()

    def pump():
        for line in server.stderr:
            lines.append(line)
            if line.startswith("Press Ctrl+C"):
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert ready.wait(60), "".join(lines)
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", "".join(lines)).group(1))
        response = request(port, "POST", "/", sample_bytes("case-closed"))
        assert response.status == 200 and response.json["id"] == 1
        sent = run_pyz(pyz, "send", "new-incoming-message", "--to", f"http://127.0.0.1:{port}/")
        assert sent.communicate(timeout=60)[0].startswith("200 newResult")
        # the console, templates and assets read from inside the zip
        ui = int(re.search(r"console: http://127\.0\.0\.1:(\d+)/", "".join(lines)).group(1))
        page = request(ui, "GET", "/")
        assert page.status == 200 and b'<tr data-id="2"' in page.body
        assert request(ui, "GET", "/static/console.js").status == 200
        assert request(ui, "GET", "/report?by=month").status == 200
    finally:
        server.terminate()
        assert server.wait(30) == 0
    out, err = run_pyz(pyz, "export").communicate(timeout=60)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["event"] for r in rows] == ["caseClosed", "newResult"], err
    assert os.path.exists(pyz.parent / "tbhook.db")
