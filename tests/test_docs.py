"""Every command has help text and a real example in the docs (as sqlite-utils checks), and
the docs' generated parts (every --help, every example run on the sample log) still say what
the program says: `make docs-update` writes them, this fails until it has."""

import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from tbhook.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TEXT = (ROOT / "README.md").read_text() + "".join(p.read_text() for p in DOCS.glob("*.md"))
COMMANDS = sorted(typer.main.get_command(app).commands)


def test_there_are_commands():
    assert {
        "serve",
        "events",
        "tail",
        "person",
        "case",
        "cases",
        "export",
        "stats",
        "quarantine",
    } <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_help(name):
    command = typer.main.get_command(app).commands[name]
    assert command.help and command.help.strip()
    for param in command.params:
        if param.name != "help" and getattr(param, "param_type_name", "") == "option":
            assert param.help, f"{name} {param.name} has no help"


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_an_example_in_the_docs(name):
    assert f"$ tbhook {name}" in TEXT


def test_every_command_is_in_the_reference():
    reference = (DOCS / "cli-reference.md").read_text()
    for name in COMMANDS:
        assert f"## `tbhook {name}`" in reference


def test_the_generated_parts_of_the_docs_are_current():
    """cog --check: every --help and every example, run again, gives what the docs show."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cogapp",
            "--check",
            "-I",
            ".",
            *sorted(p.name for p in DOCS.glob("*.md")),
            "../README.md",
        ],
        cwd=DOCS,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        "The docs' generated parts are out of date: run `make docs-update`\n"
        + result.stdout
        + result.stderr
    )


def test_the_readme_links_into_the_docs():
    readme = (ROOT / "README.md").read_text()
    for page in (
        "receiving",
        "reading",
        "reporting",
        "console",
        "developing",
        "operating",
        "postgresql",
        "cli-reference",
    ):
        assert f"(docs/{page}.md)" in readme
        assert (DOCS / f"{page}.md").exists()
