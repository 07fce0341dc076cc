"""One job at a time per domain or network: conflicting calls are refused at once, naming it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import virtjob
from tests.drivers.test.helpers import LAB, WEB, domain_xml, host_view
from virtjob import DomainState, JobState


def assert_busy(conn: virtjob.Connection, job: virtjob.Job, call: Callable[[], object]) -> None:
    """`call` is refused with OperationInvalidError naming `job`, and changes nothing."""
    before = host_view(conn)
    with pytest.raises(virtjob.OperationInvalidError) as caught:
        call()
    assert job.id in caught.value.message
    assert "busy" in caught.value.message
    assert host_view(conn) == before


def under_way(job: virtjob.Job) -> virtjob.Job:
    """Return `job` once its worker has set up and reports progress (the domain's state is
    then steady until the job ends)."""
    for info in job.watch(interval=0):
        if info.percent is not None:
            break
    assert job.info().state is JobState.RUNNING
    return job


def end(job: virtjob.Job) -> None:
    """Cancel `job` and wait for it to stop."""
    job.cancel()
    assert job.wait(timeout=5).state is JobState.CANCELLED


FIRST_JOBS = ["save", "dump", "start", "restore"]


def first_job(
    kind: str, fast: virtjob.Connection, crawl: virtjob.Connection, tmp_path: Path
) -> tuple[virtjob.Job, virtjob.Domain, Path]:
    """Start a long job of `kind`; return it, the domain it holds, and a save file of that domain.

    The domain's state while the job runs: 'test' running (paused while saved) for save and
    dump; 'web' defined and shut off for start and restore.
    """
    saved = tmp_path / "prepared.save"
    if kind in ("save", "dump"):
        dom = fast.lookup_domain("test")
        dom.save(str(saved))
        fast.restore(str(saved))
        slow = crawl.lookup_domain("test")
        if kind == "save":
            return under_way(slow.save_job(str(tmp_path / "first.save"))), dom, saved
        return under_way(slow.dump_core_job(str(tmp_path / "first.core"))), dom, saved
    dom = fast.define_domain(WEB)
    dom.start()
    dom.save(str(saved))
    if kind == "start":
        return under_way(crawl.lookup_domain("web").start_job()), dom, saved
    return under_way(crawl.restore_job(str(saved))), dom, saved


SECOND_OPS: dict[str, Callable[[virtjob.Connection, virtjob.Domain, Path, Path], object]] = {
    "save_job": lambda c, d, t, s: d.save_job(str(t / "second.save")),
    "save": lambda c, d, t, s: d.save(str(t / "second.save")),
    "dump_core_job": lambda c, d, t, s: d.dump_core_job(str(t / "second.core")),
    "start_job": lambda c, d, t, s: d.start_job(),
    "start": lambda c, d, t, s: d.start(),
    "restore_job": lambda c, d, t, s: c.restore_job(str(s)),
    "destroy": lambda c, d, t, s: d.destroy(),
    "suspend": lambda c, d, t, s: d.suspend(),
    "resume": lambda c, d, t, s: d.resume(),
    "shutdown": lambda c, d, t, s: d.shutdown(),
    "undefine": lambda c, d, t, s: d.undefine(),
    "redefine": lambda c, d, t, s: c.define_domain(d.xml()),
}


@pytest.mark.parametrize("second", SECOND_OPS)
@pytest.mark.parametrize("first", FIRST_JOBS)
def test_busy_domain_refuses_every_operation_naming_the_job(
    conn: virtjob.Connection,
    fast: virtjob.Connection,
    crawl: virtjob.Connection,
    tmp_path: Path,
    first: str,
    second: str,
) -> None:
    """While a domain has a running job, every job and state change on it is refused at once
    with OperationInvalidError naming that job's id, whatever the domain's state."""
    job, dom, saved = first_job(first, fast, crawl, tmp_path)
    try:
        assert_busy(conn, job, lambda: SECOND_OPS[second](conn, dom, tmp_path, saved))
        assert not (tmp_path / "second.save").exists()
        assert not (tmp_path / "second.core").exists()
    finally:
        end(job)


@pytest.mark.parametrize("first", FIRST_JOBS)
def test_second_job_is_accepted_once_the_first_is_cancelled(
    fast: virtjob.Connection, crawl: virtjob.Connection, tmp_path: Path, first: str
) -> None:
    """After the first job ends (here: cancelled), the same operation is accepted and works."""
    job, dom, saved = first_job(first, fast, crawl, tmp_path)
    retry: dict[str, Callable[[], virtjob.Job]] = {
        "save": lambda: dom.save_job(str(tmp_path / "second.save")),
        "dump": lambda: dom.dump_core_job(str(tmp_path / "second.core")),
        "start": dom.start_job,
        "restore": lambda: fast.restore_job(str(saved)),
    }
    with pytest.raises(virtjob.OperationInvalidError):
        retry[first]()
    end(job)
    again = retry[first]()
    assert again.wait(timeout=10).state is JobState.SUCCEEDED
    again.destroy()


def test_second_job_is_accepted_once_the_first_succeeds(
    conn: virtjob.Connection, tmp_path: Path
) -> None:
    """A job that ended successfully no longer holds its domain."""
    dom = conn.lookup_domain("test")
    first = dom.dump_core_job(str(tmp_path / "a.core"))
    finished: list[virtjob.Job] = []
    first.add_done_callback(finished.append)
    assert first.wait(timeout=10).state is JobState.SUCCEEDED
    assert finished == [first]
    second = dom.dump_core_job(str(tmp_path / "b.core"))
    assert second.result(timeout=10) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.core", "b.core"]


def test_busy_refusal_comes_from_any_connection(
    conn: virtjob.Connection, crawl: virtjob.Connection, tmp_path: Path
) -> None:
    """The lock belongs to the host: the connection that started the job is refused too."""
    job = crawl.lookup_domain("test").dump_core_job(str(tmp_path / "a.core"))
    try:
        assert_busy(crawl, job, crawl.lookup_domain("test").suspend)
        with virtjob.open(conn.uri) as third:
            assert_busy(third, job, third.lookup_domain("test").destroy)
    finally:
        end(job)


def test_create_in_flight_holds_the_name(
    conn: virtjob.Connection, crawl: virtjob.Connection, tmp_path: Path
) -> None:
    """While a domain is being created, creating, defining or restoring one of that name is
    refused naming the create job; afterwards a cancelled create leaves the name free."""
    web = conn.create_domain(WEB)
    saved = tmp_path / "web.save"
    web.save(str(saved))
    job = crawl.create_domain_job(WEB)
    try:
        assert_busy(conn, job, lambda: conn.create_domain_job(WEB))
        assert_busy(conn, job, lambda: conn.create_domain_job(domain_xml("web")))
        assert_busy(conn, job, lambda: conn.define_domain(WEB))
        assert_busy(conn, job, lambda: conn.restore_job(str(saved)))
    finally:
        end(job)
    assert conn.define_domain(WEB).state() is DomainState.SHUTOFF


def test_queued_job_holds_its_domain(conn: virtjob.Connection, crawl: virtjob.Connection) -> None:
    """A job still waiting for a pool thread holds its domain as firmly as a running one."""
    names = [f"q{i}" for i in range(17)]  # the test host runs 16 jobs at once
    for name in names:
        conn.define_domain(domain_xml(name))
    jobs = [crawl.lookup_domain(name).start_job() for name in names]
    queued, last = jobs[-1], conn.lookup_domain(names[-1])
    try:
        assert queued.info().state is JobState.QUEUED
        assert_busy(conn, queued, last.start_job)
        assert_busy(conn, queued, last.undefine)
        assert_busy(conn, queued, lambda: conn.define_domain(last.xml()))
        queued.cancel()
        assert queued.info().state is JobState.CANCELLED
    finally:
        for job in jobs:
            job.cancel()
        for job in jobs:
            job.wait(timeout=5)
    assert {job.info().state for job in jobs} == {JobState.CANCELLED}
    assert {conn.lookup_domain(n).state() for n in names} == {DomainState.SHUTOFF}
    assert last.start_job().wait(timeout=10).state is JobState.SUCCEEDED
    assert last.state() is DomainState.RUNNING


NETWORK_OPS: dict[str, Callable[[virtjob.Connection, virtjob.Network], object]] = {
    "start_job": lambda c, n: n.start_job(),
    "destroy": lambda c, n: n.destroy(),
    "undefine": lambda c, n: n.undefine(),
    "redefine": lambda c, n: c.define_network(n.xml()),
}


@pytest.mark.parametrize("second", NETWORK_OPS)
def test_busy_network_refuses_every_operation_naming_the_job(
    conn: virtjob.Connection, crawl: virtjob.Connection, second: str
) -> None:
    """While a network starts, starting, destroying, undefining or redefining it is refused
    naming the job; once the start is cancelled, it can be started."""
    net = conn.define_network(LAB)
    job = crawl.lookup_network("lab").start_job()
    try:
        assert_busy(conn, job, lambda: NETWORK_OPS[second](conn, net))
    finally:
        end(job)
    assert not net.is_active()
    assert net.start() == net
    assert net.is_active()


def test_network_create_in_flight_holds_the_name(
    conn: virtjob.Connection, crawl: virtjob.Connection
) -> None:
    """While a network is being created, creating or defining one of that name is refused."""
    job = crawl.create_network_job(LAB)
    try:
        assert_busy(conn, job, lambda: conn.create_network_job(LAB))
        assert_busy(conn, job, lambda: conn.define_network(LAB))
    finally:
        end(job)
    assert conn.create_network(LAB).is_active()
