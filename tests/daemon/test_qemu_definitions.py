"""virtjobd leaves the QEMU driver's definitions to the QEMU driver (issue 10, finding 14).

The QEMU driver keeps its definitions as XML files under the state directory; the daemon used
to keep its own record of them too and replay it at start, so a domain undefined behind its
back (or a record left by an older daemon) came back after a restart. Defining and undefining
needs no running guest.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import virtjob
from tests.daemon.conftest import DaemonProcess
from virtjob.daemon.service import DB_NAME
from virtjob.daemon.store import Store
from virtjob.errors import NoDomainError

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None,
    reason="qemu-system-x86_64 is not installed (not on $PATH)",
)


def _xml(name: str, domain_uuid: uuid.UUID) -> str:
    return (
        f"<domain type='qemu'><name>{name}</name><uuid>{domain_uuid}</uuid>"
        "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os></domain>"
    )


@pytest.fixture
def qemu_daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[DaemonProcess]:
    """A daemon serving ``qemu:///session`` from its own state directory."""
    daemon = DaemonProcess()
    monkeypatch.setenv("VIRTJOB_STATE_DIR", daemon.state_dir)  # the daemon's and ours
    try:
        yield daemon.start()
    finally:
        daemon.cleanup()


def _remote(daemon: DaemonProcess) -> virtjob.Connection:
    return virtjob.open(f"qemu+unix:///session?socket={daemon.socket}")


def _names(daemon: DaemonProcess) -> set[str]:
    with _remote(daemon) as conn:
        return {dom.name for dom in conn.list_domains()}


def test_a_domain_undefined_stays_gone_after_a_daemon_restart(
    qemu_daemon: DaemonProcess,
) -> None:
    daemon = qemu_daemon
    with _remote(daemon) as conn:
        conn.define_domain(_xml("kept", uuid.uuid4()))
        conn.define_domain(_xml("dropped", uuid.uuid4()))
        conn.define_domain(_xml("elsewhere", uuid.uuid4()))
        conn.lookup_domain("dropped").undefine()
    # Undefined through the QEMU driver itself, as `virtjob -c qemu:///session` would.
    with virtjob.open("qemu:///session") as local:
        local.lookup_domain("elsewhere").undefine()
    assert _names(daemon) >= {"kept"}
    daemon.stop()
    daemon.start()
    names = _names(daemon)
    assert "kept" in names
    assert "dropped" not in names
    assert "elsewhere" not in names, "the daemon replayed a definition over the driver's files"
    with _remote(daemon) as conn, pytest.raises(NoDomainError):
        conn.lookup_domain("elsewhere")


def test_definitions_an_older_daemon_recorded_for_qemu_are_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon = DaemonProcess()
    monkeypatch.setenv("VIRTJOB_STATE_DIR", daemon.state_dir)
    try:
        os.makedirs(daemon.state_dir, mode=0o700)
        store = Store(os.path.join(daemon.state_dir, DB_NAME))
        stale = uuid.uuid4()
        store.record_definition(
            "qemu:///session", "domain", str(stale), "ghost", _xml("ghost", stale)
        )
        store.close()
        daemon.start()
        assert "ghost" not in _names(daemon)
        daemon.stop()
        store = Store(os.path.join(daemon.state_dir, DB_NAME))
        try:
            assert store.definitions() == []
        finally:
            store.close()
    finally:
        daemon.cleanup()


def test_the_state_dir_option_beats_an_inherited_environment(tmp_path: Path) -> None:
    """virtjobd used to hand its state directory to the QEMU driver through
    ``$VIRTJOB_STATE_DIR``, set only when unset: an inherited value beat ``--state-dir``."""
    inherited = tmp_path / "inherited"
    inherited.mkdir()
    daemon = DaemonProcess(env={"VIRTJOB_STATE_DIR": str(inherited)})
    try:
        daemon.start()
        with _remote(daemon) as conn:
            conn.define_domain(_xml("placed", uuid.uuid4()))
            assert "placed" in {dom.name for dom in conn.list_domains()}
        kept = [
            os.path.join(directory, name)
            for directory, _dirs, names in os.walk(os.path.join(daemon.state_dir, "qemu"))
            for name in names
        ]
        assert any("placed" in path for path in kept), kept
    finally:
        daemon.cleanup()
    assert list(inherited.iterdir()) == [], "nothing under the inherited state directory"
