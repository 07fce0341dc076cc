"""Help, version and shell completion."""

from __future__ import annotations

import importlib
import re

import click
import pytest
from click.testing import CliRunner

from tests.cli.helpers import cli_env, host_uri, run
from virtjob import __version__
from virtjob.cli import cli
from virtjob.cli.main import COMMAND_MODULES

COMMANDS = cli.list_commands(click.Context(cli))


def test_the_lazy_group_knows_where_every_command_lives() -> None:
    """`COMMAND_MODULES` (what ``virtjob`` lists and loads on demand) names exactly the
    commands each module defines: a command added to a module and not to the table (or the
    reverse) fails here, not in a user's shell."""
    for module_name, names in COMMAND_MODULES.items():
        module = importlib.import_module(f"virtjob.cli.{module_name}")
        assert sorted(c.name for c in module.COMMANDS) == sorted(names), module_name
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None
        assert command.name == name
    assert cli.get_command(ctx, "nosuch") is None


def test_every_issue_command_exists() -> None:
    wanted = [
        "list",
        "dominfo",
        "dumpxml",
        "define",
        "undefine",
        "create",
        "start",
        "destroy",
        "suspend",
        "resume",
        "shutdown",
        "save",
        "restore",
        "dump",
        "net-list",
        "net-info",
        "net-define",
        "net-create",
        "net-start",
        "net-destroy",
        "job-list",
        "job-info",
        "job-cancel",
        "job-wait",
        "job-destroy",
    ]
    assert set(wanted) <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    example = result.output.split("Example", 1)[-1]
    assert "Example" in result.output
    assert re.search(rf"^\s+.*virtjob .*\b{re.escape(command)}\b", example, re.MULTILINE)


def test_restore_help_shows_an_example_that_works() -> None:
    """In-process, `test` runs in every fresh process, so restore's example uses a daemon."""
    result = CliRunner().invoke(cli, ["restore", "--help"])
    example = result.output.split("Example", 1)[-1]
    assert "VIRTJOB_DEFAULT_URI='test+unix:///default?socket=" in example
    assert "virtjob save test /var/tmp/test.save && virtjob restore /var/tmp/test.save" in example


def test_group_help_lists_exit_codes_and_the_default_uri() -> None:
    result = run("--help")
    assert result.code == 0
    assert "Exit codes: 0 ok, 1 failed, 2 usage error, 3 cancelled" in result.out
    assert "$VIRTJOB_DEFAULT_URI" in result.out
    assert "test:///default" in result.out


def test_version() -> None:
    result = run("--version")
    assert result.code == 0
    assert __version__ in result.out


def test_no_command_shows_the_help() -> None:
    result = run()
    assert result.code == 2
    assert result.err.startswith("Usage: virtjob [OPTIONS] COMMAND")
    assert "Exit codes:" in result.err


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script(shell: str) -> None:
    result = run("completion", shell)
    assert result.code == 0
    assert "_VIRTJOB_COMPLETE" in result.out


def complete(words: str, cword: int) -> list[str]:
    env = cli_env(_VIRTJOB_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=str(cword))
    result = run(env=env)
    assert result.code == 0, result.err
    return [line.split(",", 1)[1] for line in result.out.splitlines() if line]


def test_completion_of_commands_and_names() -> None:
    assert "net-list" in complete("virtjob net-l", 1)
    assert complete(f"virtjob -c {host_uri()} dominfo t", 4) == ["test"]
    assert complete(f"virtjob -c {host_uri()} net-info ", 4) == ["default"]
    assert complete("virtjob -c bogus:///x dominfo ", 4) == []  # never breaks the shell
