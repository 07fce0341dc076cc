"""Through virtjobd, the QEMU host's accelerator is the operator's, never a client's.

The daemon's ``qemu:///session`` host is shared by every client; ``?accel=`` configures that
host (`virtjob.drivers.qemu.HOST_PARAMS`), so a client giving it (even on a read) is refused
with `InvalidArgError` saying to drop it, and the host keeps running each guest as its
``<domain type>`` says, whoever connected first.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import virtjob
from tests.daemon.conftest import DaemonProcess
from tests.drivers.qemu.helpers import qemu_pids
from virtjob import DomainState


@pytest.fixture
def qemu_daemon() -> Iterator[DaemonProcess]:
    """A daemon serving ``qemu:///session`` from its own state directory."""
    daemon = DaemonProcess()
    try:
        yield daemon.start()
    finally:
        daemon.cleanup()


def _uri(daemon: DaemonProcess, query: str = "") -> str:
    return f"qemu+unix:///session?socket={daemon.socket}{query}"


@pytest.mark.parametrize("accel", ["tcg", "kvm"])
def test_a_clients_accel_is_refused_and_changes_nothing(
    qemu_daemon: DaemonProcess, accel: str
) -> None:
    """The first client's ``?accel=`` (a read-only list) is refused saying the operator
    chooses it; a later client without it is served, the host running each guest as its
    type says, and a later ``accel`` is refused with the same clear words (not "already open
    in this process")."""
    with (
        pytest.raises(virtjob.InvalidArgError) as refused,  # at open, or at the list
        virtjob.open(_uri(qemu_daemon, f"&accel={accel}")) as first,
    ):
        first.list_domains()
    message = refused.value.message
    assert "accel is chosen by the virtjobd operator" in message
    assert "drop ?accel= from the URI" in message
    assert "<domain type>" in message
    assert "already open" not in message

    with virtjob.open(_uri(qemu_daemon)) as conn:
        assert conn.list_domains() == []
        name = f"kept-{uuid.uuid4().hex[:8]}"
        dom = conn.define_domain(
            f"<domain type='qemu'><name>{name}</name><uuid>{uuid.uuid4()}</uuid>"
            "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64'>hvm</type></os></domain>"
        )
        assert dom.state() is DomainState.SHUTOFF

    other = "kvm" if accel == "tcg" else "tcg"
    with (
        pytest.raises(virtjob.InvalidArgError, match="chosen by the virtjobd operator"),
        virtjob.open(_uri(qemu_daemon, f"&accel={other}")) as late,
    ):
        late.lookup_domain(name)
    with virtjob.open(_uri(qemu_daemon)) as conn:
        assert conn.lookup_domain(name).state() is DomainState.SHUTOFF


def test_a_raw_get_with_accel_is_a_400_and_opens_nothing(qemu_daemon: DaemonProcess) -> None:
    """A plain HTTP GET carrying ``accel`` is answered 400 naming the parameter."""
    with qemu_daemon.client() as client:
        answer = client.get("/v1/hosts/qemu/session/domains", params={"accel": "tcg"})
        assert answer.status_code == 400, answer.text
        assert "accel is chosen by the virtjobd operator" in answer.json()["message"]
        assert client.get("/v1/hosts/qemu/session/domains").status_code == 200


def test_the_operator_chooses_the_accelerator_with_qemu_accel() -> None:
    """``virtjobd --qemu-accel tcg``: the daemon's host emulates every guest, a
    ``<domain type='kvm'>`` one too (its QEMU runs ``-accel tcg``), and says so in its
    capabilities; a client's ``accel`` is still refused."""
    daemon = DaemonProcess(extra=["--qemu-accel", "tcg"])
    try:
        daemon.start()
        with virtjob.open(_uri(daemon)) as conn:
            assert conn.capabilities().hypervisor == "tcg"
            domain_uuid = uuid.uuid4()
            dom = conn.create_domain(
                f"<domain type='kvm'><name>emulated</name><uuid>{domain_uuid}</uuid>"
                "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
                "<os><type arch='x86_64'>hvm</type></os></domain>"
            )
            [pid] = qemu_pids({domain_uuid})
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert argv[argv.index(b"-accel") + 1] == b"tcg"
            dom.destroy()
            assert qemu_pids({domain_uuid}) == []
        with (
            pytest.raises(virtjob.InvalidArgError, match="virtjobd --qemu-accel"),
            virtjob.open(_uri(daemon, "&accel=tcg")) as refused,
        ):
            refused.list_domains()
    finally:
        daemon.cleanup()
