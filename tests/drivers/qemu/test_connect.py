"""Opening qemu:///session: URIs, capabilities, what the driver refuses, shared hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

import virtjob
from tests.drivers.qemu.helpers import QemuEnv
from virtjob import JobKind

NET = "<network><name>lab</name><bridge name='virbr9'/></network>"


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("qemu:///system", "qemu:///session"),
        ("qemu:///", "qemu:///session"),
        ("qemu:///session?accel=bogus", "'bogus'"),
        ("qemu:///session?frobnicate=1", "'frobnicate'"),
        ("qemu:///session?shutdown_timeout=soon", "'soon'"),
        ("qemu:///session?shutdown_timeout=0", "'0'"),
        ("qemu:///session?shutdown_timeout=-5", "'-5'"),
    ],
)
def test_bad_uris_are_refused(state_dir: Path, uri: str, words: str) -> None:
    """A path other than /session or a bad parameter is an InvalidArgError naming it."""
    with pytest.raises(virtjob.InvalidArgError, match=words):
        virtjob.open(uri)
    assert not state_dir.exists(), "a refused URI must not touch the state directory"


def test_open_creates_the_state_directory(env: QemuEnv) -> None:
    """The state directory comes from $VIRTJOB_STATE_DIR and starts empty of domains."""
    assert (env.state_dir / "qemu" / "domains").is_dir()
    assert env.conn.list_domains() == []
    assert env.conn.list_jobs() == []
    with pytest.raises(virtjob.NoDomainError, match="nope"):
        env.conn.lookup_domain("nope")


def test_capabilities_list_the_five_domain_jobs(env: QemuEnv) -> None:
    """The driver runs the five domain job variants and no network ones."""
    caps = env.conn.capabilities()
    assert caps.driver == "qemu"
    assert caps.hypervisor == env.accel
    assert caps.job_kinds == {
        JobKind.DOMAIN_CREATE,
        JobKind.DOMAIN_START,
        JobKind.DOMAIN_SAVE,
        JobKind.DOMAIN_RESTORE,
        JobKind.DOMAIN_DUMP_CORE,
    }
    assert not caps.networks
    assert not caps.supports(JobKind.NETWORK_CREATE)
    assert not caps.supports(JobKind.NETWORK_START)


def test_networks_are_not_supported(env: QemuEnv) -> None:
    """Every network call says NoSupportError, never a silent no-op."""
    conn = env.conn
    with pytest.raises(virtjob.NoSupportError, match="networks"):
        conn.list_networks()
    with pytest.raises(virtjob.NoSupportError):
        conn.lookup_network("default")
    with pytest.raises(virtjob.NoSupportError):
        conn.define_network(NET)
    with pytest.raises(virtjob.NoSupportError):
        conn.create_network_job(NET)
    with pytest.raises(virtjob.NoSupportError):
        conn.create_network(NET)


def test_connections_to_one_state_directory_share_the_host(env: QemuEnv) -> None:
    """Two connections to the same state directory see the same domains and jobs."""
    with virtjob.open(f"qemu:///session?accel={env.accel}") as other:
        dom = other.define_domain(env.domain_xml("shared"))
        assert [d.name for d in env.conn.list_domains()] == ["shared"]
        assert env.conn.lookup_domain(str(dom.uuid)) == dom
        job = env.conn.lookup_domain("shared").start_job()
        assert other.lookup_job(job.id) == job
        job.result(timeout=30)
        job.destroy()
        assert other.lookup_domain("shared").is_active()
