"""Imports cost what they use: what each entry point loads, checked in a fresh interpreter.

``import virtjob`` and every CLI command that talks to no daemon load none of the daemon's
and the HTTP client's dependencies (nor rich, which only the live progress bar draws with);
virtjobd and the remote driver share `virtjob.api` and never import each other. Each check
runs ``python -c`` in a new process and reads its ``sys.modules`` at the end, so a module
imported anywhere on the way (at module level or by the command as it runs) is seen.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SERVER_AND_CLIENT = ("fastapi", "uvicorn", "pydantic", "starlette", "httpx", "httpcore")
"""The daemon's web stack and the remote driver's HTTP client: never loaded by `virtjob` alone."""
FAST_HOST = "test:///default?rate=4294967296"  # test:///default, its jobs at 4 GiB/s

_REPORT = """
import sys
with open(sys.argv[1], "w") as out:
    out.write("\\n".join(sorted(sys.modules)))
"""


def loaded_by(program: str, tmp_path: Path, *args: str) -> set[str]:
    """The modules a fresh interpreter holds after running `program` (which sees ``args`` as
    ``sys.argv[2:]``); fails the test if the program fails."""
    report = tmp_path / f"modules-{len(list(tmp_path.iterdir()))}.txt"
    env = {k: v for k, v in os.environ.items() if k != "VIRTJOB_DEFAULT_URI"}
    done = subprocess.run(
        [sys.executable, "-c", program + _REPORT, str(report), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{program!r} {args} exited {done.returncode}: {done.stderr}"
    return set(report.read_text().splitlines())


def packages(modules: set[str], *names: str) -> set[str]:
    """The modules among `modules` that are one of the packages `names` or inside one."""
    return {m for m in modules if any(m == n or m.startswith(n + ".") for n in names)}


def test_import_virtjob_loads_no_server_or_client_stack(tmp_path: Path) -> None:
    modules = loaded_by("import virtjob", tmp_path)
    assert "virtjob.connection" in modules  # the probe sees what the import did
    assert not packages(modules, *SERVER_AND_CLIENT)
    assert not packages(modules, "virtjob.daemon", "virtjob.drivers.remote", "rich", "click")


def test_the_wire_contract_loads_neither_side(tmp_path: Path) -> None:
    modules = loaded_by("import virtjob.api", tmp_path)
    assert "virtjob.api.document" in modules
    assert not packages(modules, *SERVER_AND_CLIENT, "virtjob.daemon", "virtjob.drivers.remote")


CLI = """
import sys
from virtjob.cli import main
code = main(sys.argv[2:])
assert code == 0, code
"""

LOCAL_COMMANDS = [
    ("list",),
    ("list", "--all", "--json"),
    ("dominfo", "test"),
    ("domstate", "test", "--reason"),
    ("dumpxml", "test"),
    ("net-list",),
    ("net-info", "default"),
    ("save", "test", "{tmp}/test.save"),
    ("dump", "test", "{tmp}/test.core"),
    ("dump", "test", "{tmp}/test.core", "--json"),
    ("domjobinfo", "test"),
    ("job-list",),
    ("job-list", "--json"),
    ("--help",),
    ("--version",),
]


@pytest.mark.parametrize("command", LOCAL_COMMANDS, ids=" ".join)
def test_a_command_on_an_in_process_host_loads_no_server_client_or_rich(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    """Run as ``virtjob -c test:///default COMMAND``, in the process (its stdout a pipe)."""
    args = [arg.format(tmp=tmp_path) for arg in command]
    modules = loaded_by(CLI, tmp_path, "-c", FAST_HOST, *args)
    assert "virtjob.cli.main" in modules
    assert not packages(modules, *SERVER_AND_CLIENT)
    assert not packages(modules, "virtjob.daemon", "virtjob.drivers.remote")
    assert not packages(modules, "rich", "virtjob.cli.livebar")  # no bar is drawn in a pipe


@pytest.mark.parametrize("command", [("list",), ("dominfo", "test")], ids=" ".join)
def test_the_quick_commands_load_only_their_own_command_module(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    """``list`` and ``dominfo`` are the commands virtjob is timed by beside virsh
    (bench/cli.py, on test:///default): the job and network commands, the machinery that
    follows a job and completion's stay unloaded, and so does urllib.parse (a plain URI is
    split without it)."""
    modules = loaded_by(CLI, tmp_path, "-c", "test:///default", *command)
    assert "virtjob.cli.domains" in modules
    assert not packages(
        modules,
        "virtjob.cli.jobs",
        "virtjob.cli.networks",
        "virtjob.cli.jobrun",
        "virtjob.cli.progress",
        "virtjob.cli.signals",
        "click.shell_completion",
        "urllib.parse",
    )


def test_loading_the_cli_leaves_the_garbage_collector_as_it_was(tmp_path: Path) -> None:
    """virtjob.cli pauses the collector while it loads (its start-up), then sets it back: on
    if it was on, off if the program had turned it off."""
    loaded_by("import gc\nimport virtjob.cli\nassert gc.isenabled()", tmp_path)
    loaded_by("import gc\ngc.disable()\nimport virtjob.cli\nassert not gc.isenabled()", tmp_path)


def test_the_cli_process_freezes_what_it_loaded(tmp_path: Path) -> None:
    """main(), the process's entry point, freezes the loaded modules' objects out of later
    collections (the exit's included); the collector still runs for what the command makes."""
    program = CLI + "import gc\nassert gc.get_freeze_count() > 10000\nassert gc.isenabled()\n"
    loaded_by(program, tmp_path, "-c", "test:///default", "list")


XML_MODULES = (
    "lxml",
    "virtjob.config.parser",
    "virtjob.config.location",
    "virtjob.config.elements",
    "virtjob.config.writer",
    "virtjob.config.domain_xml",
    "virtjob.config.network_xml",
)
"""lxml and the modules of virtjob.config that read or write XML with it."""

XML_FREE_COMMANDS = [
    ("list",),
    ("list", "--all", "--json"),
    ("dominfo", "test"),
    ("domstate", "test"),
    ("net-list",),
    ("net-info", "default"),
    ("job-list",),
]


@pytest.mark.parametrize("command", XML_FREE_COMMANDS, ids=" ".join)
def test_a_command_that_shows_no_xml_loads_no_lxml(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    """The test host is made without parsing XML and the XML functions of virtjob.config load
    when first used: ``list``, ``dominfo``... (the commands timed beside virsh) load no lxml."""
    modules = loaded_by(CLI, tmp_path, "-c", FAST_HOST, *command)
    assert "virtjob.config.domain" in modules  # the host's configs are there, their XML not
    assert not packages(modules, *XML_MODULES)


@pytest.mark.parametrize("command", [("dumpxml", "test"), ("net-dumpxml", "default")], ids=" ".join)
def test_a_command_that_shows_xml_loads_it_when_it_runs(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    """The probe sees lxml when a command uses it (so the check above can fail)."""
    modules = loaded_by(CLI, tmp_path, "-c", FAST_HOST, *command)
    assert {"lxml.etree", "virtjob.config.parser", "virtjob.config.writer"} <= modules


def test_the_config_package_loads_lxml_on_first_use_of_an_xml_name(tmp_path: Path) -> None:
    modules = loaded_by("import virtjob.config, virtjob.drivers.test", tmp_path)
    assert "virtjob.config.domain" in modules
    assert not packages(modules, *XML_MODULES)
    modules = loaded_by("from virtjob.config import parse_network_xml", tmp_path)
    assert {"lxml.etree", "virtjob.config.network_xml"} <= modules


def _walk(package: str) -> str:
    """A program importing `package` and every module below it (bar ``__main__``)."""
    return (
        "import importlib, pkgutil\n"
        f"root = importlib.import_module({package!r})\n"
        f"for info in pkgutil.walk_packages(root.__path__, {package + '.'!r}):\n"
        "    if not info.name.endswith('__main__'):\n"
        "        importlib.import_module(info.name)\n"
    )


def test_the_daemon_does_not_import_the_remote_driver(tmp_path: Path) -> None:
    pytest.importorskip("fastapi", reason="virtjobd's dependencies are not installed")
    for program in ("import virtjob.daemon", _walk("virtjob.daemon")):
        modules = loaded_by(program, tmp_path)
        assert "virtjob.daemon" in modules
        assert not packages(modules, "virtjob.drivers.remote", "httpx", "httpcore"), program


def test_the_remote_driver_does_not_import_the_daemon(tmp_path: Path) -> None:
    pytest.importorskip("httpx", reason="the remote driver's dependencies are not installed")
    for program in ("import virtjob.drivers.remote", _walk("virtjob.drivers.remote")):
        modules = loaded_by(program, tmp_path)
        assert "virtjob.drivers.remote" in modules
        assert not packages(
            modules, "virtjob.daemon", "fastapi", "uvicorn", "starlette", "pydantic"
        ), program
