"""The accelerator: each guest runs as its ``<domain type>`` says, and a connection cannot
silently change the accelerator of a host that is already open."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import virtjob
from tests.drivers.qemu.helpers import QemuEnv, qemu_pids
from virtjob.drivers.qemu.command import kvm_usable

needs_kvm = pytest.mark.skipif(not kvm_usable(), reason="/dev/kvm is not usable here")


@pytest.fixture
def kvm_env(env: QemuEnv) -> QemuEnv:
    """The test's host, when it was opened with KVM."""
    if env.accel != "kvm":
        pytest.skip("the QEMU tests run with accel=tcg ($VIRTJOB_TEST_ACCEL)")
    return env


@needs_kvm
def test_a_qemu_domain_runs_under_tcg_and_a_kvm_one_under_kvm(kvm_env: QemuEnv) -> None:
    """On a KVM host, <domain type='qemu'> is emulated (TCG) and type='kvm' uses KVM."""
    emulated = kvm_env.conn.create_domain(kvm_env.domain_xml("emulated", domain_type="qemu"))
    accelerated = kvm_env.conn.create_domain(kvm_env.domain_xml("accelerated"))
    assert not kvm_env.kvm_enabled(emulated)
    assert kvm_env.kvm_enabled(accelerated)
    emulated.destroy()
    accelerated.destroy()


@pytest.fixture
def tcg_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, accel: str
) -> Iterator[tuple[virtjob.Connection, QemuEnv]]:
    """A second host (its own state directory) opened with ?accel=tcg."""
    monkeypatch.setenv("VIRTJOB_STATE_DIR", str(tmp_path / "tcg-state"))
    files = tmp_path / "tcg-files"
    files.mkdir()
    with virtjob.open("qemu:///session?accel=tcg") as conn:
        tcg = QemuEnv(conn, "tcg", tmp_path / "tcg-state", files)
        try:
            yield conn, tcg
        finally:
            for ref in conn.list_domains():
                dom = conn.lookup_domain(ref.name)
                if dom.is_active():
                    dom.destroy()
    assert qemu_pids(tcg.uuids) == []


def test_accel_tcg_emulates_every_guest_of_its_host(
    tcg_host: tuple[virtjob.Connection, QemuEnv],
) -> None:
    """A host opened with ?accel=tcg runs even type='kvm' guests under TCG."""
    conn, tcg = tcg_host
    dom = conn.create_domain(tcg.domain_xml("emulated"))
    assert not tcg.kvm_enabled(dom)
    assert conn.capabilities().hypervisor == "tcg"


def test_an_accel_that_contradicts_the_open_host_is_refused(
    tcg_host: tuple[virtjob.Connection, QemuEnv],
) -> None:
    """Another connection to an open host may repeat its accel or leave it out; a different
    one is refused saying the host is already open with which accelerator, and what to do."""
    conn, tcg = tcg_host
    with virtjob.open("qemu:///session?accel=tcg") as same, virtjob.open("qemu:///session") as bare:
        assert same.capabilities().hypervisor == "tcg"
        assert bare.capabilities().hypervisor == "tcg"
    with pytest.raises(virtjob.InvalidArgError) as refused:
        virtjob.open("qemu:///session?accel=kvm")
    message = refused.value.message
    assert "already open in this process with accel=tcg" in message
    assert str(tcg.state_dir) in message
    assert "accel=kvm cannot apply" in message
    assert "<domain type=" in message
    assert conn.list_domains() == []


@needs_kvm
def test_accel_tcg_on_a_host_opened_without_accel_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, accel: str
) -> None:
    """A host opened with no accel runs guests by their type; ?accel=tcg cannot change it
    (it was silently ignored before), while ?accel=kvm agrees with it where KVM works."""
    monkeypatch.setenv("VIRTJOB_STATE_DIR", str(tmp_path / "auto-state"))
    with virtjob.open("qemu:///session") as conn:
        with pytest.raises(virtjob.InvalidArgError, match="with no accel parameter"):
            virtjob.open("qemu:///session?accel=tcg")
        with virtjob.open("qemu:///session?accel=kvm") as kvm:
            assert kvm.capabilities().hypervisor == "kvm"
        assert conn.list_domains() == []


def test_a_test_driver_domain_is_refused(env: QemuEnv) -> None:
    """<domain type='test'> belongs to the test driver: define and create refuse it."""
    xml = env.domain_xml("toy", domain_type="test")
    with pytest.raises(virtjob.InvalidArgError, match="only the test driver runs"):
        env.conn.define_domain(xml)
    with pytest.raises(virtjob.InvalidArgError, match="type='qemu'"):
        env.conn.create_domain_job(xml)
    assert env.conn.list_domains() == []


NOBODY = 65534
WITHOUT_KVM = """
import sys
import virtjob
with virtjob.open("qemu:///session") as conn:
    print(conn.capabilities().hypervisor)
    try:
        conn.create_domain_job(sys.argv[1])
    except virtjob.VirtError as exc:
        print(type(exc).__name__, exc.message)
    print(len(conn.list_domains()), len(conn.list_jobs()))
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run a process that cannot open /dev/kvm",
)
def test_a_kvm_guest_is_refused_where_kvm_is_not_usable(env: QemuEnv, tmp_path: Path) -> None:
    """Where /dev/kvm cannot be opened (here: a process running as nobody, able to read and
    search files but not to write /dev/kvm), <domain type='kvm'> is refused at once with
    NoSupportError saying what to use instead; nothing starts. The host's default is TCG."""
    state = tmp_path / "nobody-state"
    state.mkdir()
    state.chmod(0o777)
    caps = "-all,+dac_read_search"
    result = subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            f"--inh-caps={caps}",
            "--ambient-caps=+dac_read_search",
            sys.executable,
            "-c",
            WITHOUT_KVM,
            env.domain_xml("fast"),
        ],
        env={**os.environ, "VIRTJOB_STATE_DIR": str(state)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    hypervisor, refusal, counts = result.stdout.splitlines()
    assert hypervisor == "tcg"
    assert refusal.startswith("NoSupportError domain 'fast' is <domain type='kvm'>")
    assert "/dev/kvm is not usable" in refusal
    assert "<domain type='qemu'>" in refusal
    assert "accel=tcg" in refusal
    assert counts == "0 0"
