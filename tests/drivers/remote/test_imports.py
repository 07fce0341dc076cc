"""What the remote driver loads, in a fresh interpreter (see tests/test_imports.py).

httpx imports its own command-line client (click, rich, pygments: ~35 ms and 69 modules)
whenever those are installed, as they are beside virtjob; the remote driver keeps it out.
"""

from __future__ import annotations

from pathlib import Path

from tests.daemon.conftest import DaemonProcess
from tests.test_imports import loaded_by, packages


def test_a_remote_command_loads_no_httpx_cli(
    shared_daemon: DaemonProcess, host: str, tmp_path: Path
) -> None:
    program = (
        "import sys, virtjob\n"
        "with virtjob.open(sys.argv[2]) as conn:\n"
        "    assert conn.list_domains()\n"
    )
    modules = loaded_by(program, tmp_path, shared_daemon.uri(host))
    assert "httpx" in modules  # the probe sees what the command did
    assert not packages(modules, "rich", "pygments", "click", "httpx._main")


def test_httpx_imported_first_keeps_its_cli(tmp_path: Path) -> None:
    """Only an import of httpx made by the remote driver goes without the CLI."""
    modules = loaded_by("import httpx\nimport virtjob.drivers.remote\nhttpx.main", tmp_path)
    assert "httpx._main" in modules
