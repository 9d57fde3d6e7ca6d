"""Help that reads as one program: one placeholder style, whole one-line summaries, each
subcommand's own help, one meaning for -n, and options that would do nothing refused."""

from __future__ import annotations

import re

import pytest
import typer.main
from conftest import event_body
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.events import parse
from tbhook.store import Delivery
from tbhook.store.sqlite import SQLiteStore

runner = CliRunner(env={"COLUMNS": "100"})
ROOT = typer.main.get_command(app)


def every_command() -> list[list[str]]:
    found = []
    for name, command in ROOT.commands.items():  # type: ignore[attr-defined]
        found.append([name])
        found += [[name, sub] for sub in getattr(command, "commands", {})]
    return found


@pytest.mark.parametrize("words", every_command(), ids=" ".join)
def test_help_uses_one_placeholder_style(words):
    out = runner.invoke(app, [*words, "--help"]).output
    assert out.startswith("Usage: ")
    # typer's own placeholders: <str>, <int range>, {ID}, and ranges such as 0<=x<=65535
    leaks = re.findall(r"<[a-z][^>]*>|\{[A-Za-z_.|-]+\}|\S*x<=\S*|\S*x>=\S*|\S*<=x\S*", out)
    assert leaks == [], (words, leaks)
    usage = out.splitlines()[0]
    arguments = usage.split("[OPTIONS]", 1)[-1].split()
    assert all(w.strip("[].") == w.strip("[].").upper() for w in arguments), usage


def test_the_command_list_gives_each_a_whole_summary():
    out = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["--help"]).output
    listed = out.split("Commands:\n", 1)[1].splitlines()
    assert len(listed) == len(ROOT.commands)  # type: ignore[attr-defined]
    for line in listed:
        assert not line.rstrip().endswith("..."), line
        assert line.rstrip().endswith("."), line
        assert len(line) <= 80


@pytest.mark.parametrize("sub", ["show", "retry", "drop"])
def test_each_quarantine_subcommand_has_its_own_help(sub):
    out = runner.invoke(app, ["quarantine", sub, "--help"]).output
    assert out.startswith(f"Usage: root quarantine {sub} [OPTIONS]")
    assert "Commands:" not in out


def test_dash_n_means_limit_everywhere():
    for name, command in ROOT.commands.items():  # type: ignore[attr-defined]
        for param in command.params:
            if "-n" in param.opts:
                assert "--limit" in param.opts, name
    assert runner.invoke(app, ["generate", "-n", "3"]).exit_code == 2
    assert len(runner.invoke(app, ["generate", "--count", "3"]).stdout.splitlines()) == 3


@pytest.fixture
def stored(db_path):
    store = SQLiteStore.open(db_path)
    store.append([Delivery(b, parse(b)) for b in (event_body(), b"{oops")])
    store.close()
    return db_path


@pytest.mark.parametrize(
    "args, named",
    [
        (["event", "1", "--raw", "-f", "json"], "--format"),
        (["event", "1", "--raw", "--tz", "UTC"], "--tz"),
        (["quarantine", "1", "--raw", "--format", "csv"], "--format"),
    ],
)
def test_options_that_would_do_nothing_beside_raw_are_refused(stored, args, named):
    result = runner.invoke(app, [*args, "--db", str(stored)])
    assert result.exit_code == 2
    assert f"--raw writes the body byte for byte; {named} would do nothing beside it" in (
        result.stderr
    )


def test_raw_has_no_meaning_for_the_quarantine_list(stored):
    result = runner.invoke(app, ["quarantine", "--raw", "--db", str(stored)])
    assert result.exit_code == 2 and "No such option: --raw" in result.stderr


def test_a_zone_set_in_the_environment_does_not_refuse_raw(stored, monkeypatch):
    result = CliRunner(env={"TBHOOK_TZ": "Europe/Amsterdam"}).invoke(
        app, ["event", "1", "--raw", "--db", str(stored)]
    )
    assert result.exit_code == 0 and result.stdout_bytes == event_body()
