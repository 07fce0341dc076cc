"""All seven job variants of the test driver and their synchronous twins, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

import virtjob
from virtjob import DomainState, JobKind, JobState

WEB = """<domain type='test'><name>web</name><memory unit='MiB'>256</memory>
<vcpu>2</vcpu><os><type>hvm</type></os></domain>"""
LAB = """<network><name>lab</name><bridge name='virbr7'/><forward mode='nat'/>
<ip address='10.7.0.1' netmask='255.255.255.0'/></network>"""


def core_image(path: Path) -> bytes:
    """The memory image inside a test-driver core file (after magic, length and XML)."""
    data = path.read_bytes()
    assert data.startswith(b"VIRTJOB-TEST-CORE\x00")
    start = 18
    xml_length = int.from_bytes(data[start : start + 4], "little")
    return data[start + 4 + xml_length :]


def test_capabilities_list_all_seven_variants(conn: virtjob.Connection) -> None:
    """The test driver runs every job variant and has networks."""
    caps = conn.capabilities()
    assert caps.driver == "test"
    assert caps.job_kinds == frozenset(JobKind)
    assert all(caps.supports(kind) for kind in JobKind)
    assert caps.networks


def test_host_starts_with_running_test_and_active_default(conn: virtjob.Connection) -> None:
    """A fresh host has domain 'test' running and network 'default' active."""
    [dom] = conn.list_domains()
    assert (dom.name, dom.state(), dom.is_persistent()) == ("test", DomainState.RUNNING, True)
    assert dom.id is not None
    assert conn.lookup_domain(str(dom.uuid)) == dom
    [net] = conn.list_networks()
    assert (net.name, net.is_active(), net.is_persistent()) == ("default", True, True)
    assert net.info().bridge == "virbr0"


def test_create_domain_job_gives_a_running_transient_domain(conn: virtjob.Connection) -> None:
    """create_domain_job reports progress and hands back the new domain."""
    job = conn.create_domain_job(WEB)
    assert job.kind is JobKind.DOMAIN_CREATE
    assert job.subject == "web"
    infos = list(job.watch(interval=0))
    assert infos[-1].state is JobState.SUCCEEDED
    assert infos[-1].percent == 100.0
    dom = job.domain()
    assert isinstance(dom, virtjob.Domain)
    assert (dom.name, dom.state(), dom.is_persistent()) == ("web", DomainState.RUNNING, False)
    assert job.network() is None
    assert job.error() is None
    assert conn.lookup_domain("web") == dom


def test_sync_create_leaves_no_job_record(conn: virtjob.Connection) -> None:
    """The synchronous twin returns the domain and destroys its job."""
    dom = conn.create_domain(WEB)
    assert dom.state() is DomainState.RUNNING
    assert conn.list_jobs() == []


def test_start_job_boots_a_defined_domain(conn: virtjob.Connection) -> None:
    """A defined domain is shut off until start_job succeeds."""
    dom = conn.define_domain(WEB)
    assert (dom.state(), dom.id, dom.is_persistent()) == (DomainState.SHUTOFF, None, True)
    job = dom.start_job()
    assert job.result(timeout=10) == dom
    assert job.domain() == dom
    assert dom.state() is DomainState.RUNNING
    assert dom.id is not None
    dom.destroy()
    assert dom.start() == dom
    assert dom.is_active()


def test_save_and_restore_round_trip_keeps_memory(conn: virtjob.Connection, tmp_path: Path) -> None:
    """Save stops the domain; restore brings it back with the very memory it had."""
    dom = conn.lookup_domain("test")
    dom.dump_core(str(tmp_path / "before.core"))
    job = dom.save_job(str(tmp_path / "test.save"))
    infos = list(job.watch(interval=0))
    assert job.result() is None
    assert dom.state() is DomainState.SHUTOFF
    assert [i.percent or 0 for i in infos] == sorted(i.percent or 0 for i in infos)
    assert infos[-1].processed == infos[-1].total == dom.info().current_memory
    assert len([i for i in infos if i.state is JobState.RUNNING]) >= 3
    restore = conn.restore_job(str(tmp_path / "test.save"))
    assert restore.kind is JobKind.DOMAIN_RESTORE
    assert restore.subject == "test"
    restored = restore.result(timeout=10)
    assert restored == dom
    assert dom.state() is DomainState.RUNNING
    dom.dump_core(str(tmp_path / "after.core"))
    assert core_image(tmp_path / "after.core") == core_image(tmp_path / "before.core")


def test_saving_a_transient_domain_removes_it_and_restore_brings_it_back(
    conn: virtjob.Connection, tmp_path: Path
) -> None:
    """A transient domain disappears when saved and comes back, transient, on restore."""
    web = conn.create_domain(WEB)
    web.save(str(tmp_path / "web.save"))
    with pytest.raises(virtjob.NoDomainError):
        conn.lookup_domain("web")
    back = conn.restore(str(tmp_path / "web.save"))
    assert (back.name, back.state(), back.is_persistent()) == ("web", DomainState.RUNNING, False)


def test_save_of_a_paused_domain_restores_running(conn: virtjob.Connection, tmp_path: Path) -> None:
    """A paused domain can be saved; restore resumes it."""
    dom = conn.lookup_domain("test")
    dom.suspend()
    dom.save(str(tmp_path / "p.save"))
    assert dom.state() is DomainState.SHUTOFF
    assert conn.restore(str(tmp_path / "p.save")).state() is DomainState.RUNNING


def test_dump_core_keeps_the_domain_state(conn: virtjob.Connection, tmp_path: Path) -> None:
    """A core dump writes a real file and the domain goes on as it was."""
    dom = conn.lookup_domain("test")
    dom.suspend()
    job = dom.dump_core_job(str(tmp_path / "t.core"))
    assert job.kind is JobKind.DOMAIN_DUMP_CORE
    assert job.result(timeout=10) is None
    assert dom.state() is DomainState.PAUSED
    assert len(core_image(tmp_path / "t.core")) == dom.info().current_memory // 4096


def test_network_create_and_start(conn: virtjob.Connection) -> None:
    """create_network_job gives an active transient network; start_job starts a defined one."""
    job = conn.create_network_job(LAB)
    net = job.result(timeout=10)
    assert job.network() == net
    assert job.domain() is None
    assert (net.name, net.is_active(), net.is_persistent()) == ("lab", True, False)
    net.destroy()
    with pytest.raises(virtjob.NoNetworkError):
        conn.lookup_network("lab")
    defined = conn.define_network(LAB)
    assert not defined.is_active()
    start = defined.start_job()
    assert start.kind is JobKind.NETWORK_START
    assert start.result(timeout=10) == defined
    assert defined.is_active()
    defined.destroy()
    assert defined.start() == defined


def test_jobs_are_seen_from_a_second_connection(
    conn: virtjob.Connection, slow_conn: virtjob.Connection, tmp_path: Path
) -> None:
    """A job started on one connection is listed, watched and cancelled from another."""
    job = slow_conn.lookup_domain("test").save_job(str(tmp_path / "x.save"))
    [seen] = conn.list_jobs()
    assert seen == conn.lookup_job(job.id)
    assert seen.id == job.id
    assert (seen.kind, seen.subject) == (JobKind.DOMAIN_SAVE, "test")
    for info in seen.watch(interval=0):
        if (info.percent or 0) > 5:
            seen.cancel()
    assert job.wait(timeout=5).state is JobState.CANCELLED
    with pytest.raises(virtjob.JobCancelledError):
        job.result()
    assert conn.lookup_domain("test").state() is DomainState.RUNNING
    assert list(tmp_path.iterdir()) == []
    job.destroy()
    with pytest.raises(virtjob.NoJobError):
        conn.lookup_job(job.id)


def test_rate_is_per_connection(
    conn: virtjob.Connection, slow_conn: virtjob.Connection, tmp_path: Path
) -> None:
    """The same dump takes ~8 s through the slow connection and ~0.1 s through the fast one."""
    slow = slow_conn.lookup_domain("test").dump_core_job(str(tmp_path / "slow.core"))
    first = next(info for info in slow.watch(interval=0) if info.remaining is not None)
    assert first.remaining is not None
    assert first.remaining > 4
    slow.cancel()
    assert slow.wait(timeout=5).state is JobState.CANCELLED
    fast = conn.lookup_domain("test").dump_core_job(str(tmp_path / "fast.core"))
    first = next(info for info in fast.watch(interval=0) if info.remaining is not None)
    assert first.remaining is not None
    assert first.remaining < 1
    assert fast.wait(timeout=5).state is JobState.SUCCEEDED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast.core"]
