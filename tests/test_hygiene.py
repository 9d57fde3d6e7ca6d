"""The suite fails when a test leaves a file in the checkout (a database named "None" was once
committed that way), and the checkout tracks no database."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import CHECKOUT


def _checkout_with(tmp_path: Path, test: str) -> Path:
    """A git checkout holding this suite's conftest and one test file."""
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    for name in ("conftest.py", "pgcluster.py"):
        shutil.copy(CHECKOUT / "tests" / name, repo / "tests" / name)
    (repo / "tests" / "test_one.py").write_text(test)
    (repo / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "start"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *command],
            cwd=repo,
            check=True,
        )
    return repo


def _pytest(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_test_that_leaves_a_file_in_the_checkout_fails_the_run(tmp_path):
    repo = _checkout_with(
        tmp_path,
        "from pathlib import Path\n\n"
        "def test_leaves():\n"
        "    (Path(__file__).resolve().parent.parent / 'None').write_bytes(b'x')\n",
    )
    result = _pytest(repo)
    assert result.returncode == 1, result.stdout
    assert "files left in the checkout" in result.stdout
    assert "?? None" in result.stdout


def test_a_clean_run_passes(tmp_path):
    repo = _checkout_with(tmp_path, "def test_nothing():\n    assert 1 + 1 == 2\n")
    result = _pytest(repo)
    assert result.returncode == 0, result.stdout
    assert "files left" not in result.stdout


def test_no_database_is_tracked():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=CHECKOUT, capture_output=True, text=True, check=True
    ).stdout.split()
    databases = [
        name
        for name in tracked
        if Path(name).name == "None" or name.endswith((".db", ".db-wal", ".db-shm", ".sqlite"))
    ]
    assert databases == []
