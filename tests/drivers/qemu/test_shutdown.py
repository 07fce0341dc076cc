"""``shutdown`` on a real QEMU guest only asks (ACPI); ``force_after`` kills it, and says so.

The guests here have no OS, so nothing answers the ACPI power button: exactly the guest a
silent kill used to hide (issue 10, finding 18).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

import virtjob
from tests.drivers.qemu.helpers import QemuEnv
from virtjob import DomainState


@pytest.fixture
def plain(env: QemuEnv) -> Iterator[virtjob.Connection]:
    """A connection to the test's host without ``?shutdown_timeout=``: shutdown only asks."""
    with virtjob.open(f"qemu:///session?accel={env.accel}") as conn:
        yield conn


def _killers() -> list[str]:
    """Threads a shutdown left behind to kill the guest later (what main used to do)."""
    return [t.name for t in threading.enumerate() if t.name.startswith("virtjob-shutdown")]


def test_shutdown_only_asks_and_force_after_kills_with_a_warning(
    env: QemuEnv, plain: virtjob.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    dom = plain.define_domain(env.domain_xml("deaf"))
    dom.start()
    pid = env.pid(dom)

    assert dom.shutdown() is False  # asked; returns at once
    assert dom.state() is DomainState.RUNNING
    assert env.qemu_pids() == [pid]
    assert _killers() == []  # nothing will kill it behind the user's back

    caplog.set_level(logging.WARNING, logger="virtjob")
    # Still running 0.5 s after this second request too: only then is it forced off.
    assert dom.shutdown(force_after=0.5) is True
    assert dom.state() is DomainState.SHUTOFF
    assert env.qemu_pids() == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].name.startswith("virtjob")
    message = warnings[0].getMessage()
    assert "'deaf' did not power off within 0.5 s" in message
    assert f"pid {pid}" in message

    dom.start()  # a clean start after a forced stop; force_after 0 forces at once
    assert dom.shutdown(force_after=0) is True
    assert dom.state() is DomainState.SHUTOFF


def test_a_guest_that_goes_away_in_time_is_not_forced(
    env: QemuEnv, plain: virtjob.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    dom = plain.define_domain(env.domain_xml("gone"))
    dom.start()
    caplog.set_level(logging.WARNING, logger="virtjob")
    ended = threading.Event()

    def destroy_soon() -> None:  # stands in for a guest that powers off while we wait
        with virtjob.open(f"qemu:///session?accel={env.accel}") as other:
            other.lookup_domain("gone").destroy()
        ended.set()

    threading.Timer(0.2, destroy_soon).start()
    assert dom.shutdown(force_after=30) is False
    assert ended.wait(10)
    assert dom.state() is DomainState.SHUTOFF
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
