"""Fixtures for the CLI tests: an in-process runner bound to a fresh test host."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner

from tests.cli.helpers import FAST, Daemon, Result, host_uri, running_daemon
from virtjob.cli import cli
from virtjob.cli.signals import SIGNALS

Invoke = Callable[..., Result]


@pytest.fixture(scope="session", autouse=True)
def sigint_not_ignored() -> Iterator[None]:
    """Make SIGINT raise KeyboardInterrupt here, and so take effect in the CLI subprocesses.

    A shell without job control starts background commands with SIGINT ignored, which their
    children inherit; the Ctrl-C tests need it delivered.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True)
def job_signals_restored() -> Iterator[None]:
    """Give back SIGINT, SIGTERM and SIGHUP after a test that followed a job in this process.

    (The ``virtjob`` process keeps ignoring them once its job has ended; pytest must not.)
    """
    yield
    SIGNALS.restore()


@pytest.fixture
def uri() -> str:
    """A fresh in-process test host on which jobs run fast."""
    return host_uri(FAST)


@pytest.fixture
def invoke(uri: str) -> Invoke:
    """Run virtjob commands in this process (click's CliRunner) against the `uri` host.

    Commands invoked through one fixture share the host, so ``define`` then ``list --all``
    sees the new domain.
    """
    runner = CliRunner()

    def call(*args: str, stdin: str | None = None, connect: str | None = None) -> Result:
        result = runner.invoke(
            cli,
            ["-c", connect or uri, *args],
            input=stdin,
            catch_exceptions=False,
            env={"VIRTJOB_DEFAULT_URI": None},
        )
        return Result(result.exit_code, result.stdout, result.stderr)

    return call


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    """A real virtjobd for this module's tests (see `running_daemon`), stopped after them."""
    pytest.importorskip("virtjob.daemon", reason="virtjobd (src/virtjob/daemon) is not available")
    with running_daemon() as started:
        yield started
