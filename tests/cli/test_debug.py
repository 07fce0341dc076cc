"""``virtjob --debug``: the records of virtjob's own loggers, from DEBUG up, on stderr (job
transitions, what the CLI does), stdout untouched; other libraries' loggers left alone."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from tests.cli.helpers import FAST, cli_env, host_uri, run
from virtjob.cli import cli

# "12:34:56.789 virtjob.jobs DEBUG: job 0123456789ab (domain-save of 'test'): running"
LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (?P<logger>virtjob(?:\.\S+)?) (?P<level>[A-Z]+): ")


def _records(stderr: str) -> list[tuple[str, str, str]]:
    """(logger, level, message) of every debug-log line in `stderr`."""
    found = []
    for line in stderr.splitlines():
        match = LINE.match(line)
        if match:
            found.append((match["logger"], match["level"], line[match.end() :]))
    return found


def test_debug_logs_what_the_cli_does_on_stderr_and_leaves_stdout_alone() -> None:
    uri = host_uri()
    quiet = run("-c", uri, "list")
    loud = run("--debug", "-c", uri, "list")
    assert loud.code == quiet.code == 0
    assert loud.out == quiet.out  # the table, and nothing else
    assert quiet.err == ""
    records = _records(loud.err)
    assert ("virtjob.cli", "DEBUG", f"connecting to {uri}") in records
    assert any(message.startswith(f"connected to {uri} in ") for _, _, message in records)
    assert all(level == "DEBUG" for _, level, _ in records)


def test_debug_tells_a_jobs_story(tmp_path: Path) -> None:
    target = tmp_path / "test.save"
    result = run("--debug", "-c", host_uri(FAST), "save", "test", str(target))
    assert result.code == 0, result.err
    job_id = result.out.split()[1]  # "job ID domain-save test: ..." (plain progress lines)
    records = _records(result.err)
    cli_steps = [m for logger, _, m in records if logger == "virtjob.cli" and job_id in m]
    assert cli_steps[0] == f"started job {job_id} (domain-save of 'test')"
    assert cli_steps[-1].startswith(f"job {job_id} ended succeeded after ")
    # the engine's own transitions, on the same stream, in order
    engine = [m for logger, _, m in records if logger == "virtjob.jobs" and job_id in m]
    assert any(m.endswith(": running") for m in engine), result.err
    assert ": succeeded" in engine[-1], result.err


def test_debug_does_not_turn_on_other_libraries_loggers() -> None:
    """Only the ``virtjob`` loggers: no ``basicConfig`` making every library chatty."""
    program = (
        "import logging, sys\n"
        "from virtjob.cli import main\n"
        "root = logging.getLogger()\n"
        "code = main(['--debug', '-c', sys.argv[1], 'list'])\n"
        "assert root.level == logging.WARNING, root.level\n"
        "assert not root.handlers, root.handlers\n"
        "assert not logging.getLogger('elsewhere').isEnabledFor(logging.DEBUG)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, host_uri()],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_debug_in_process_is_undone_when_the_command_ends() -> None:
    """Run in-process (``cli.run``, tests, an embedding program), ``--debug`` leaves the
    ``virtjob`` logger as it found it."""
    logger = logging.getLogger("virtjob")
    level, handlers = logger.level, list(logger.handlers)
    result = CliRunner().invoke(cli, ["--debug", "-c", host_uri(), "list"])
    assert result.exit_code == 0, result.output
    assert "virtjob.cli DEBUG: connecting to" in result.stderr
    assert logger.level == level
    assert logger.handlers == handlers
