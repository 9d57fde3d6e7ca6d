"""The wheel: built from the source, installed with its dependencies into a fresh virtual
environment, its `tbhook` serves deliveries and the console (templates and assets inside)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import event_body, request

CHECKOUT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with only the wheel (and what it depends on): its bin directory."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # built from a copy: nothing is left in the checkout
    shutil.copytree(
        CHECKOUT / "tbhook", source / "tbhook", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (CHECKOUT / name).exists():
            shutil.copy(CHECKOUT / name, source / name)
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(source)], check=True
    )
    (wheel,) = (work / "dist").glob("tbhook-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # This pip installs into the new environment (--python): the wheel and its dependencies,
    # from the package index, nothing from this checkout or this environment.
    subprocess.run(
        [
            *pip,
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-compile",
            str(wheel),
        ],
        check=True,
    )
    return venv / "bin"


def test_the_installed_wheel_serves_deliveries_and_the_console(installed, tmp_path):
    where = subprocess.run(
        [installed / "python", "-c", "import tbhook; print(tbhook.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout
    assert where.startswith(str(installed.parent))  # not this checkout
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen(
        [
            installed / "tbhook",
            "serve",
            "--db",
            str(tmp_path / "t.db"),
            "--port",
            "0",
            "--ui",
            "--ui-port",
            "0",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    try:
        banner = ""
        for line in proc.stderr:
            banner += line
            if line.startswith("Press Ctrl+C"):
                break
        port = int(re.search(r"receiving on http://127\.0\.0\.1:(\d+)/", banner).group(1))
        console = int(re.search(r"console: http://127\.0\.0\.1:(\d+)/", banner).group(1))
        assert request(port, "POST", "/", event_body(caseId=31)).status == 200
        page = request(console, "GET", "/?case=31")
        assert page.status == 200 and b"<html" in page.body and b"/cases/31" in page.body
        styles = re.search(rb'href="(/static/[^"]+\.css)"', page.body).group(1).decode()
        css = request(console, "GET", styles)
        assert css.status == 200 and css.headers["content-type"].startswith("text/css")
        assert css.body == (CHECKOUT / "tbhook" / "console" / "static" / "console.css").read_bytes()
    finally:
        proc.terminate()
        proc.wait(15)
    assert proc.returncode == 0
