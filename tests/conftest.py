"""Fixtures shared by the whole suite."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

import virtjob

from .system_guard import SYSTEM_CANARIES, Canaries

_hosts = itertools.count(1)
_canaries = Canaries(SYSTEM_CANARIES)
_damage: list[str] = []


@pytest.fixture(autouse=True)
def _system_paths_untouched() -> Iterator[None]:
    """Fail the test that changed a system path (e.g. a save onto /dev/null), and repair it."""
    global _canaries  # noqa: PLW0603 - the one baseline of the run, renewed after a repair
    yield
    changed = _canaries.changed()
    if changed:
        _damage.extend(changed)
        _canaries.restore()
        _canaries = Canaries(SYSTEM_CANARIES)
        pytest.fail("this test changed system paths: " + "; ".join(changed), pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any system path changed, even outside a test (a fixture's teardown)."""
    late = _canaries.changed()
    if late:
        _damage.extend(late)
        _canaries.restore()
    if _damage:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say what the system-path guard saw, so every run's log shows the proof."""
    if _damage:
        terminalreporter.write_line("system paths CHANGED by the run (repaired where possible):")
        for line in _damage:
            terminalreporter.write_line(f"  {line}")
    else:
        terminalreporter.write_line(
            "system paths untouched by the run: " + ", ".join(sorted(_canaries.marks))
        )


@pytest.fixture
def conn() -> Iterator[virtjob.Connection]:
    """A connection to a fresh test:/// host of its own, fast enough for quick tests.

    At 4 GiB/s the 512 MiB domain `test` saves in an eighth of a second.
    """
    with virtjob.open(f"test:///t{next(_hosts)}?rate={4 << 30}") as connection:
        yield connection


@pytest.fixture
def slow_conn(conn: virtjob.Connection) -> Iterator[virtjob.Connection]:
    """A second connection to the same host as `conn`, whose jobs take seconds (to cancel them)."""
    name = conn.uri.split("?")[0]
    with virtjob.open(f"{name}?rate={64 << 20}") as connection:
        yield connection
