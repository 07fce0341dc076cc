"""``shutdown`` on a real QEMU guest only asks (ACPI) and returns at once; ``force_after`` has
the host kill QEMU later if the guest ignored the request, and say so in a warning.

The guests here have no OS, so nothing answers the ACPI power button: exactly the guest a
silent kill used to hide (issue 10, finding 18).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import virtjob
from tests.cli.helpers import running_daemon
from tests.drivers.qemu.helpers import QemuEnv, stopped, wait_until
from virtjob import DomainState, JobState


@pytest.fixture
def plain(env: QemuEnv) -> Iterator[virtjob.Connection]:
    """A connection to the test's host without ``?shutdown_timeout=``: shutdown only asks."""
    with virtjob.open(f"qemu:///session?accel={env.accel}") as conn:
        yield conn


def _killers() -> list[str]:
    """Threads waiting to force a domain off after a shutdown request."""
    return [t.name for t in threading.enumerate() if t.name.startswith("virtjob-shutdown")]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """virtjob's warnings (qemu.qmp logs an error of its own when a QEMU is killed)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("virtjob")
    ]


def test_shutdown_only_asks_and_force_after_kills_later_with_a_warning(
    env: QemuEnv, plain: virtjob.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    dom = plain.define_domain(env.domain_xml("deaf"))
    dom.start()
    pid = env.pid(dom)

    dom.shutdown()  # asked; returns at once
    assert dom.state() is DomainState.RUNNING
    assert env.qemu_pids() == [pid]
    assert _killers() == []  # nothing will kill it behind the user's back

    caplog.set_level(logging.WARNING, logger="virtjob")
    asked = time.monotonic()
    dom.shutdown(force_after=0.5)
    assert time.monotonic() - asked < 0.5, "shutdown(force_after) must not wait"
    assert _killers() == ["virtjob-shutdown-force-deaf"]
    wait_until(lambda: dom.state() is DomainState.SHUTOFF, "the forced power-off")
    assert time.monotonic() - asked >= 0.5
    assert env.qemu_pids() == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].name.startswith("virtjob")
    message = warnings[0].getMessage()
    assert "'deaf' did not power off within 0.5 s" in message
    assert f"pid {pid}" in message

    dom.start()  # a clean start after a forced stop; force_after 0 forces at once
    dom.shutdown(force_after=0)
    wait_until(lambda: dom.state() is DomainState.SHUTOFF, "the forced power-off")
    wait_until(lambda: _killers() == [], "the force-off timer to end")


def test_a_sooner_request_replaces_a_later_one(
    env: QemuEnv, plain: virtjob.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """One timer per domain: the earliest deadline asked for wins."""
    dom = plain.define_domain(env.domain_xml("twice"))
    dom.start()
    caplog.set_level(logging.WARNING, logger="virtjob")
    dom.shutdown(force_after=3600)
    dom.shutdown(force_after=0.2)
    dom.shutdown(force_after=3000)  # later than the pending one: kept as it is
    assert len(_killers()) == 1
    wait_until(lambda: dom.state() is DomainState.SHUTOFF, "the forced power-off")
    assert len(_warnings(caplog)) == 1
    wait_until(lambda: _killers() == [], "the force-off timer to end")


def test_a_guest_that_goes_away_in_time_is_not_forced(
    env: QemuEnv, plain: virtjob.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """QEMU ending before the deadline cancels the timer: no kill, no warning, no thread."""
    dom = plain.define_domain(env.domain_xml("gone"))
    dom.start()
    caplog.set_level(logging.WARNING, logger="virtjob")
    dom.shutdown(force_after=30)
    assert dom.state() is DomainState.RUNNING
    os.kill(env.pid(dom), signal.SIGTERM)  # stands in for a guest that powers off in time
    wait_until(lambda: _killers() == [], "the force-off timer to be cancelled")
    assert _warnings(caplog) == []


def test_a_job_started_before_the_deadline_is_not_killed(
    env: QemuEnv, plain: virtjob.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """The busy check and the kill happen under the host lock: a save started after the
    shutdown request keeps its QEMU; the warning says why the domain was not forced off."""
    dom = plain.define_domain(env.domain_xml("busy"))
    dom.start()
    pid = env.pid(dom)
    caplog.set_level(logging.WARNING, logger="virtjob")
    dom.shutdown(force_after=0.2)
    with stopped(pid):  # the save waits on QEMU: busy for as long as we need
        job = dom.save_job(env.path("busy.save"))
        wait_until(lambda: _killers() == [], "the force-off timer to fire")
        assert env.qemu_pids() == [pid]
        warnings = _warnings(caplog)
        assert len(warnings) == 1
        assert f"job {job.id} now runs on it: not forcing it off" in warnings[0]
        job.cancel()
        assert job.wait(timeout=5).state is JobState.CANCELLED
    assert dom.state() is DomainState.RUNNING


def test_a_crash_after_an_ignored_shutdown_is_a_crash(
    env: QemuEnv, plain: virtjob.Connection
) -> None:
    """Asking the guest to power off does not make a later death of QEMU expected."""
    dom = plain.define_domain(env.domain_xml("crashy"))
    dom.start()
    dom.shutdown()
    assert dom.state() is DomainState.RUNNING
    os.kill(env.pid(dom), signal.SIGKILL)
    wait_until(lambda: dom.state() is not DomainState.RUNNING, "QEMU's death to be noticed")
    assert dom.state() is DomainState.CRASHED


def test_many_force_after_requests_do_not_block_the_daemon(env: QemuEnv, tmp_path: Path) -> None:
    """Each request answers at once (the kill is a timer in the daemon): more of them than
    the daemon has request threads leave every other request served."""
    xml = env.domain_xml("deaf", domain_type="kvm" if env.accel == "kvm" else "qemu")
    with running_daemon(VIRTJOB_STATE_DIR=str(tmp_path / "daemon-state")) as daemon:
        uri = f"qemu+unix:///session?socket={daemon.socket}"
        with virtjob.open(uri) as conn:
            dom = conn.define_domain(xml)
            dom.start()
            try:
                errors: list[BaseException] = []

                def ask() -> None:
                    try:
                        with virtjob.open(uri) as client:
                            client.lookup_domain("deaf").shutdown(force_after=3600)
                    except BaseException as exc:
                        errors.append(exc)

                askers = [threading.Thread(target=ask, daemon=True) for _ in range(48)]
                for asker in askers:
                    asker.start()
                for asker in askers:
                    asker.join(timeout=30)
                assert [a for a in askers if a.is_alive()] == [], "a shutdown request blocked"
                assert errors == []
                started = time.monotonic()
                assert [d.name for d in conn.list_domains()] == ["deaf"]
                assert time.monotonic() - started < 5
                assert dom.state() is DomainState.RUNNING
            finally:
                dom.destroy()
