"""Immediate operations, state transitions, handles, connections and job listings."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

import virtjob
from tests.drivers.test.helpers import (
    LAB,
    LAB_UUID,
    TEST_UUID,
    WEB,
    WEB_UUID,
    domain_xml,
    network_xml,
    same_host,
)
from virtjob import DomainState, JobKind, JobState
from virtjob.config import parse_domain_xml, parse_network_xml

WEB_DISK = f"""<domain type='test'>
  <name>web</name>
  <uuid>{WEB_UUID}</uuid>
  <description>web server, second edition</description>
  <memory unit='GiB'>1</memory>
  <currentMemory unit='MiB'>512</currentMemory>
  <vcpu>4</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/virtjob/images/web.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:AB:CD:01'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>"""
"""'web' again (same name and UUID) with another configuration."""


def names(conn: virtjob.Connection) -> list[str]:
    """The sorted names of the host's domains."""
    return sorted(d.name for d in conn.list_domains())


# -- domain life cycle ----------------------------------------------------------------------------


def test_persistent_domain_life_cycle(conn: virtjob.Connection) -> None:
    """define → start → suspend → resume → shutdown → start → destroy → undefine, with the state,
    id and persistence each step should give."""
    web = conn.define_domain(WEB)
    assert names(conn) == ["test", "web"]
    info = web.info()
    assert (info.state, info.id, info.persistent) == (DomainState.SHUTOFF, None, True)
    assert (info.memory, info.current_memory, info.vcpus) == (256 << 20, 256 << 20, 2)
    assert not web.is_active()
    assert web.start() == web
    assert (web.state(), web.is_active()) == (DomainState.RUNNING, True)
    first_id = web.id
    assert first_id is not None
    web.suspend()
    assert (web.state(), web.id, web.is_active()) == (DomainState.PAUSED, first_id, True)
    web.resume()
    assert (web.state(), web.id) == (DomainState.RUNNING, first_id)
    web.shutdown()
    assert (web.state(), web.id) == (DomainState.SHUTOFF, None)
    web.start()
    assert web.state() is DomainState.RUNNING
    web.destroy()
    assert (web.state(), web.id, web.is_persistent()) == (DomainState.SHUTOFF, None, True)
    web.undefine()
    assert names(conn) == ["test"]
    with pytest.raises(virtjob.NoDomainError, match="'web'"):
        conn.lookup_domain("web")


def test_destroy_of_a_paused_domain_stops_it(conn: virtjob.Connection) -> None:
    """A paused domain can be destroyed."""
    dom = conn.lookup_domain("test")
    dom.suspend()
    dom.destroy()
    assert (dom.state(), dom.id) == (DomainState.SHUTOFF, None)


def test_undefine_of_a_running_domain_makes_it_transient(conn: virtjob.Connection) -> None:
    """A running domain that is undefined goes on running, transient; destroying it removes it."""
    dom = conn.lookup_domain("test")
    dom_id = dom.id
    dom.undefine()
    assert (dom.state(), dom.id, dom.is_persistent()) == (DomainState.RUNNING, dom_id, False)
    assert names(conn) == ["test"]
    dom.destroy()
    assert names(conn) == []
    with pytest.raises(virtjob.NoDomainError):
        dom.state()


@pytest.mark.parametrize("stop", ["destroy", "shutdown"])
def test_stopping_a_transient_domain_removes_it(conn: virtjob.Connection, stop: str) -> None:
    """A created (transient) domain disappears when it stops, however it stops."""
    web = conn.create_domain(WEB)
    assert (web.state(), web.is_persistent()) == (DomainState.RUNNING, False)
    getattr(web, stop)()
    assert names(conn) == ["test"]
    with pytest.raises(virtjob.NoDomainError, match="'web'"):
        web.info()


def test_defining_a_running_transient_domain_makes_it_persistent(
    conn: virtjob.Connection,
) -> None:
    """Defining the XML of a running transient domain gives it a definition; it keeps running."""
    web = conn.create_domain(WEB)
    assert conn.define_domain(WEB) == web
    assert (web.state(), web.is_persistent()) == (DomainState.RUNNING, True)
    web.destroy()
    assert (web.state(), web.is_persistent()) == (DomainState.SHUTOFF, True)


def test_redefining_the_same_name_and_uuid_updates_the_xml(conn: virtjob.Connection) -> None:
    """define_domain with the same name and UUID replaces the configuration in place."""
    web = conn.define_domain(WEB)
    again = conn.define_domain(WEB_DISK)
    assert again == web
    assert names(conn) == ["test", "web"]
    assert parse_domain_xml(web.xml()) == parse_domain_xml(WEB_DISK)
    info = web.info()
    assert (info.memory, info.current_memory, info.vcpus) == (1 << 30, 512 << 20, 4)
    assert "52:54:00:ab:cd:01" in web.xml()
    assert "web server, second edition" in web.xml()


def test_redefining_a_name_with_another_uuid_is_refused(conn: virtjob.Connection) -> None:
    """A definition with the name of a domain but another UUID is a clash, not a redefinition."""
    conn.define_domain(WEB)
    with pytest.raises(virtjob.OperationInvalidError, match=WEB_UUID):
        conn.define_domain(domain_xml("web"))


@pytest.mark.parametrize("document", [WEB, WEB_DISK, domain_xml("plain", mib=64)])
def test_domain_xml_parses_back_to_the_same_config(conn: virtjob.Connection, document: str) -> None:
    """dom.xml() is the configuration that was defined, and defining it again changes nothing."""
    dom = conn.define_domain(document)
    # a document without <uuid> gets a fresh one
    assert parse_domain_xml(dom.xml()) == replace(parse_domain_xml(document), uuid=dom.uuid)
    text = dom.xml()
    assert conn.define_domain(text) == dom
    assert dom.xml() == text
    dom.undefine()
    created = conn.create_domain(text)
    assert created == dom
    assert created.xml() == text


def test_network_xml_parses_back_to_the_same_config(conn: virtjob.Connection) -> None:
    """net.xml() is the network that was defined, for a defined and for a created network."""
    net = conn.define_network(LAB)
    assert parse_network_xml(net.xml()) == parse_network_xml(LAB)
    default = conn.lookup_network("default")
    parsed = parse_network_xml(default.xml())
    assert (parsed.name, parsed.bridge, parsed.forward_mode) == ("default", "virbr0", "nat")
    net.undefine()
    created = conn.create_network(LAB)
    assert parse_network_xml(created.xml()) == parse_network_xml(LAB)


def test_domain_id_changes_across_restarts(conn: virtjob.Connection, tmp_path: Path) -> None:
    """Every boot (start, create, restore) gives a new id, never reused on the host."""
    dom = conn.lookup_domain("test")
    seen = [dom.id]
    for _ in range(3):
        dom.destroy()
        assert dom.id is None
        dom.start()
        seen.append(dom.id)
    dom.save(str(tmp_path / "t.save"))
    conn.restore(str(tmp_path / "t.save"))
    seen.append(dom.id)
    seen.append(conn.create_domain(WEB).id)
    assert None not in seen
    assert len(set(seen)) == len(seen)


def test_lookup_by_uuid_in_any_spelling(conn: virtjob.Connection) -> None:
    """A domain or network can be looked up by its UUID, whatever the case or braces."""
    dom = conn.lookup_domain("test")
    for key in (TEST_UUID, TEST_UUID.upper(), "{" + TEST_UUID + "}", TEST_UUID.replace("-", "")):
        assert conn.lookup_domain(key) == dom
    conn.define_network(LAB)
    assert conn.lookup_network(LAB_UUID.upper()).name == "lab"


# -- networks -------------------------------------------------------------------------------------


def test_network_life_cycle(conn: virtjob.Connection) -> None:
    """define → start → destroy keeps a persistent network; undefine of an active one makes it
    transient; destroying that removes it."""
    net = conn.define_network(LAB)
    assert (net.is_active(), net.is_persistent()) == (False, True)
    info = net.info()
    assert (info.bridge, info.forward_mode) == ("virbr7", "nat")
    net.start()
    assert net.is_active()
    net.destroy()
    assert (net.is_active(), net.is_persistent()) == (False, True)
    net.start()
    net.undefine()
    assert (net.is_active(), net.is_persistent()) == (True, False)
    net.destroy()
    assert sorted(n.name for n in conn.list_networks()) == ["default"]
    with pytest.raises(virtjob.NoNetworkError, match="'lab'"):
        net.info()


def test_undefine_of_an_inactive_network_removes_it(conn: virtjob.Connection) -> None:
    """An inactive defined network is gone once undefined."""
    net = conn.define_network(LAB)
    net.undefine()
    with pytest.raises(virtjob.NoNetworkError):
        conn.lookup_network("lab")


def test_redefining_a_network_updates_its_xml(conn: virtjob.Connection) -> None:
    """define_network with the same name and UUID replaces the definition."""
    net = conn.define_network(LAB)
    changed = LAB.replace("virbr7", "virbr8").replace("mode='nat'", "mode='route'")
    assert conn.define_network(changed) == net
    assert (net.info().bridge, net.info().forward_mode) == ("virbr8", "route")
    assert parse_network_xml(net.xml()) == parse_network_xml(changed)


def test_starting_a_network_whose_bridge_is_taken_fails(conn: virtjob.Connection) -> None:
    """A defined network cannot start on the bridge of an active one."""
    net = conn.define_network(network_xml("clash", "virbr0"))
    with pytest.raises(virtjob.OperationInvalidError, match="virbr0"):
        net.start_job()
    assert not net.is_active()
    conn.lookup_network("default").destroy()
    assert net.start().is_active()


# -- handles and connections ----------------------------------------------------------------------


def test_handles_from_two_connections_compare_equal(conn: virtjob.Connection) -> None:
    """Handles on the same domain or network through different connections to one host (even
    with different parameters) are equal and hash alike."""
    with same_host(conn, 1 << 20) as other, virtjob.open(conn.uri) as twin:
        for a in (conn, other, twin):
            for b in (conn, other, twin):
                assert a.lookup_domain("test") == b.lookup_domain(TEST_UUID)
                assert a.lookup_network("default") == b.lookup_network("default")
        doms = {c.lookup_domain("test") for c in (conn, other, twin)}
        assert len(doms) == 1
        assert conn.lookup_domain("test") != conn.lookup_network("default")
        web = conn.define_domain(WEB)
        assert other.lookup_domain("web") == web
        assert web != conn.lookup_domain("test")


def test_handles_on_different_hosts_differ(conn: virtjob.Connection) -> None:
    """Domain 'test' has the same UUID on every host, but handles on two hosts are not equal."""
    with virtjob.open("test:///operations-elsewhere") as elsewhere:
        here, there = conn.lookup_domain("test"), elsewhere.lookup_domain("test")
        assert here.uuid == there.uuid
        assert here != there
        assert conn.lookup_network("default") != elsewhere.lookup_network("default")


def test_changes_are_seen_through_every_connection(conn: virtjob.Connection) -> None:
    """Connections to one host share its domains and networks."""
    with same_host(conn, 1 << 30) as other:
        conn.define_domain(WEB)
        other.lookup_domain("web").start()
        assert conn.lookup_domain("web").state() is DomainState.RUNNING
        other.define_network(LAB)
        assert not conn.lookup_network("lab").is_active()


CLOSED_CALLS: dict[str, Callable[[virtjob.Connection], object]] = {
    "capabilities": lambda c: c.capabilities(),
    "list_domains": lambda c: c.list_domains(),
    "lookup_domain": lambda c: c.lookup_domain("test"),
    "define_domain": lambda c: c.define_domain(WEB),
    "create_domain_job": lambda c: c.create_domain_job(WEB),
    "create_domain": lambda c: c.create_domain(WEB),
    "restore_job": lambda c: c.restore_job("/nonexistent.save"),
    "list_networks": lambda c: c.list_networks(),
    "lookup_network": lambda c: c.lookup_network("default"),
    "define_network": lambda c: c.define_network(LAB),
    "create_network_job": lambda c: c.create_network_job(LAB),
    "list_jobs": lambda c: c.list_jobs(),
    "lookup_job": lambda c: c.lookup_job("0123456789ab"),
}


@pytest.mark.parametrize("call", CLOSED_CALLS)
def test_closed_connection_refuses_every_call(conn: virtjob.Connection, call: str) -> None:
    """After close(), every call raises OperationInvalidError naming the connection."""
    closed = virtjob.open(conn.uri)
    closed.close()
    assert closed.closed
    with pytest.raises(virtjob.OperationInvalidError, match=re.escape(closed.uri)) as caught:
        CLOSED_CALLS[call](closed)
    assert "closed" in caught.value.message
    assert [d.name for d in conn.list_domains()] == ["test"]
    assert [n.name for n in conn.list_networks()] == ["default"]
    assert conn.list_jobs() == []


def test_handles_of_a_closed_connection_refuse_every_call(
    conn: virtjob.Connection, tmp_path: Path
) -> None:
    """Domain and network handles made through a connection stop working when it closes."""
    with virtjob.open(conn.uri) as other:
        dom, net = other.lookup_domain("test"), other.lookup_network("default")
    calls: list[Callable[[], object]] = [
        dom.info,
        dom.xml,
        dom.start_job,
        lambda: dom.save_job(str(tmp_path / "x.save")),
        lambda: dom.dump_core_job(str(tmp_path / "x.core")),
        dom.destroy,
        dom.suspend,
        dom.undefine,
        net.info,
        net.start_job,
        net.destroy,
    ]
    for call in calls:
        with pytest.raises(virtjob.OperationInvalidError, match="closed"):
            call()
    assert conn.lookup_domain("test").state() is DomainState.RUNNING
    assert conn.lookup_network("default").is_active()
    assert list(tmp_path.iterdir()) == []


def test_jobs_outlive_the_connection_that_started_them(
    conn: virtjob.Connection, tmp_path: Path
) -> None:
    """Closing a connection does not stop its jobs: they belong to the host."""
    other = same_host(conn, 1 << 30)
    job = other.lookup_domain("test").dump_core_job(str(tmp_path / "t.core"))
    other.close()
    other.close()  # closing twice is harmless
    assert conn.lookup_job(job.id) == job
    assert job.wait(timeout=10).state is JobState.SUCCEEDED
    assert (tmp_path / "t.core").is_file()


# -- job listings ---------------------------------------------------------------------------------


def test_list_jobs_is_oldest_first_and_lookup_finds_each(
    conn: virtjob.Connection, tmp_path: Path
) -> None:
    """list_jobs gives every job not destroyed, oldest first; lookup_job finds each by id;
    destroyed ones are gone from both."""
    conn.define_domain(WEB)
    jobs = [
        conn.lookup_domain("test").dump_core_job(str(tmp_path / "t.core")),
        conn.lookup_domain("web").start_job(),
        conn.create_network_job(LAB),
        conn.create_domain_job(domain_xml("db", mib=64)),
    ]
    for job in jobs:
        job.wait(timeout=10)
    assert conn.list_jobs() == jobs
    assert [(j.kind, j.subject) for j in conn.list_jobs()] == [
        (JobKind.DOMAIN_DUMP_CORE, "test"),
        (JobKind.DOMAIN_START, "web"),
        (JobKind.NETWORK_CREATE, "lab"),
        (JobKind.DOMAIN_CREATE, "db"),
    ]
    assert len({j.id for j in jobs}) == 4
    assert all(re.fullmatch(r"[0-9a-f]{12}", j.id) for j in jobs)
    for job in jobs:
        found = conn.lookup_job(job.id)
        assert found == job
        assert (found.kind, found.subject) == (job.kind, job.subject)
        assert found.info().state is JobState.SUCCEEDED
    jobs[1].destroy()
    assert conn.list_jobs() == [jobs[0], jobs[2], jobs[3]]
    with pytest.raises(virtjob.NoJobError, match=jobs[1].id):
        conn.lookup_job(jobs[1].id)
    with pytest.raises(virtjob.NoJobError):
        jobs[1].info()
    found_domain = conn.lookup_job(jobs[3].id).domain()
    assert found_domain == conn.lookup_domain("db")


def test_failed_and_cancelled_jobs_stay_listed_until_destroyed(
    conn: virtjob.Connection, slow_conn: virtjob.Connection, tmp_path: Path
) -> None:
    """Jobs that failed or were cancelled keep their records, with their outcome."""
    cancelled = slow_conn.lookup_domain("test").dump_core_job(str(tmp_path / "t.core"))
    cancelled.cancel()
    cancelled.wait(timeout=5)
    web = conn.create_domain(WEB)
    web.save(str(tmp_path / "web.save"))
    data = bytearray((tmp_path / "web.save").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "web.save").write_bytes(bytes(data))
    failed = conn.restore_job(str(tmp_path / "web.save"))
    failed.wait(timeout=10)
    listed = {j.id: j.info().state for j in conn.list_jobs()}
    assert listed == {cancelled.id: JobState.CANCELLED, failed.id: JobState.FAILED}
    assert isinstance(conn.lookup_job(failed.id).error(), virtjob.InvalidArgError)


def save_and_restore(conn: virtjob.Connection, path: Path) -> virtjob.Domain:
    """Save 'test' synchronously, then restore it synchronously."""
    conn.lookup_domain("test").save(str(path))
    return conn.restore(str(path))


SYNC_CALLS: dict[str, Callable[[virtjob.Connection, Path], object]] = {
    "create_domain": lambda c, t: c.create_domain(WEB),
    "start": lambda c, t: c.define_domain(WEB).start(),
    "save": lambda c, t: c.lookup_domain("test").save(str(t / "t.save")),
    "dump_core": lambda c, t: c.lookup_domain("test").dump_core(str(t / "t.core")),
    "restore": lambda c, t: save_and_restore(c, t / "t.save"),
    "create_network": lambda c, t: c.create_network(LAB),
    "network start": lambda c, t: c.define_network(LAB).start(),
}


@pytest.mark.parametrize("call", SYNC_CALLS)
def test_sync_twins_leave_no_job_record(
    conn: virtjob.Connection, tmp_path: Path, call: str
) -> None:
    """A synchronous call runs a job and destroys it before returning."""
    SYNC_CALLS[call](conn, tmp_path)
    assert conn.list_jobs() == []


def test_failed_sync_call_leaves_no_job_record(conn: virtjob.Connection, tmp_path: Path) -> None:
    """A synchronous call whose job fails raises the job's error and leaves no record."""
    dom = conn.lookup_domain("test")
    dom.save(str(tmp_path / "t.save"))
    data = bytearray((tmp_path / "t.save").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "t.save").write_bytes(bytes(data))
    with pytest.raises(virtjob.InvalidArgError, match="checksum"):
        conn.restore(str(tmp_path / "t.save"))
    assert conn.list_jobs() == []
    assert dom.state() is DomainState.SHUTOFF
