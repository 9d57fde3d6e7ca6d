"""Every command has help text and a real example in the README (as sqlite-utils checks)."""

from pathlib import Path

import pytest
import typer.main

from tbhook.cli import app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
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
def test_command_has_an_example_in_the_readme(name):
    assert f"$ tbhook {name}" in README
