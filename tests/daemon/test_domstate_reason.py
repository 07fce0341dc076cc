"""A test domain says why it is in its state (virsh's reasons), through the daemon too."""

from __future__ import annotations

import os

import virtjob
from virtjob import DomainState

from .conftest import DaemonProcess


def test_the_reason_of_the_last_state_change_is_recorded(
    shared_daemon: DaemonProcess, conn: virtjob.Connection, host: str
) -> None:
    """`domstate --reason` used to say "unknown" after every suspend, save, destroy, restore."""
    dom = conn.lookup_domain("test")

    def seen() -> tuple[DomainState, str | None]:
        info = dom.info()
        return info.state, info.reason

    assert seen() == (DomainState.RUNNING, "booted")
    dom.suspend()
    assert seen() == (DomainState.PAUSED, "user")
    dom.resume()
    assert seen() == (DomainState.RUNNING, "unpaused")
    target = os.path.join(shared_daemon.files, f"{host}.save")
    dom.save(target)
    assert seen() == (DomainState.SHUTOFF, "saved")
    conn.restore(target)
    assert seen() == (DomainState.RUNNING, "restored")
    dom.destroy()
    assert seen() == (DomainState.SHUTOFF, "destroyed")
    dom.start()
    assert seen() == (DomainState.RUNNING, "booted")
    dom.shutdown()
    assert seen() == (DomainState.SHUTOFF, "shutdown")
    os.unlink(target)
