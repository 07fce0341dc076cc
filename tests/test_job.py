"""The public `virtjob.Job`: what `result()`, `domain()` and `network()` give, for every kind of
job and whichever way the handle was had (started, listed, looked up)."""

from __future__ import annotations

from pathlib import Path

import pytest

import virtjob
from virtjob import Domain, JobKind, JobState, Network
from virtjob.domain import domain_job
from virtjob.drivers.base import DomainRef
from virtjob.drivers.test import driver as test_driver
from virtjob.jobs import JobContext, LocalJobDriver

WEB = """<domain type='test'><name>web</name><memory unit='MiB'>256</memory>
<os><type>hvm</type></os></domain>"""
LAB = """<network><name>lab</name><bridge name='virbr7'/></network>"""
OFFICE = """<network><name>office</name><bridge name='virbr8'/></network>"""
SAFETY = 10.0
"""Seconds after which a blocked test gives up (a bound, never a synchronisation delay)."""


def _jobs(conn: virtjob.Connection) -> LocalJobDriver:
    """The job driver of `conn`'s test host, to run jobs a real driver would not."""
    driver = conn.driver
    assert isinstance(driver, test_driver.TestDriver)
    return driver.host.jobs


def _every_kind(conn: virtjob.Connection, tmp_path: Path) -> list[virtjob.Job[object]]:
    """One finished job of each of the seven kinds on `conn` (records kept)."""
    test = conn.lookup_domain("test")
    started: list[virtjob.Job[object]] = []

    def run(job: virtjob.Job[object]) -> None:
        job.wait(SAFETY)
        started.append(job)

    run(conn.create_domain_job(WEB))
    run(conn.lookup_domain("web").dump_core_job(str(tmp_path / "web.core")))
    run(test.save_job(str(tmp_path / "test.save")))
    run(conn.restore_job(str(tmp_path / "test.save")))
    conn.lookup_domain("web").destroy()
    run(conn.define_domain(WEB).start_job())
    run(conn.create_network_job(LAB))
    run(conn.define_network(OFFICE).start_job())
    assert {job.kind for job in started} == set(JobKind)
    return started


def test_every_kind_gives_the_same_results_from_every_handle(
    conn: virtjob.Connection, tmp_path: Path
) -> None:
    """The handle that started a job, the listed one and the looked-up one give equal results
    of the same class: a Domain, a Network or None as the kind says, never a driver's ref."""
    started = _every_kind(conn, tmp_path)
    listed = {job.id: job for job in conn.list_jobs()}
    for job in started:
        assert job.info().state is JobState.SUCCEEDED, job
        expected: type[object] = (
            Domain if job.kind.yields_domain else Network if job.kind.yields_network else type(None)
        )
        for handle in (job, listed[job.id], conn.lookup_job(job.id)):
            assert isinstance(handle, virtjob.Job)
            made = handle.result()
            assert type(made) is expected, (job.kind, made)
            assert made == job.result()
            assert handle.domain() == (made if job.kind.yields_domain else None)
            assert handle.network() == (made if job.kind.yields_network else None)


def test_domain_is_none_while_the_job_runs_and_after_a_cancel(
    slow_conn: virtjob.Connection,
) -> None:
    """A create job that is not final has made nothing yet; a cancelled one never does."""
    job = slow_conn.create_domain_job(WEB)  # a quarter of 256 MiB at 64 MiB/s: one second
    assert job.domain() is None
    assert job.network() is None
    assert not job.info().state.terminal  # so domain() was asked before the end
    job.cancel()
    assert job.wait(SAFETY).state is JobState.CANCELLED
    assert job.domain() is None
    with pytest.raises(virtjob.JobCancelledError, match=job.id):
        job.result()


def test_a_failed_job_has_made_nothing(conn: virtjob.Connection) -> None:
    """domain() and network() of a failed create are None; result() raises the job's error."""

    def fail(ctx: JobContext) -> DomainRef:
        raise virtjob.OperationFailedError("the simulated boot failed")

    job = domain_job(conn, _jobs(conn).start_job(JobKind.DOMAIN_CREATE, "web", fail))
    assert job.wait(SAFETY).state is JobState.FAILED
    assert job.domain() is None
    assert job.network() is None
    with pytest.raises(virtjob.OperationFailedError, match="simulated boot"):
        job.result()


@pytest.mark.parametrize("call", ["domain", "network", "result"])
def test_a_destroyed_job_raises_no_job(conn: virtjob.Connection, call: str) -> None:
    """After destroy(), domain(), network() and result() raise NoJobError like every call."""
    job = conn.create_domain_job(WEB)
    job.wait(SAFETY)
    job.destroy()
    with pytest.raises(virtjob.NoJobError, match=job.id):
        getattr(job, call)()


def test_a_driver_job_that_yields_no_ref_is_an_internal_error(conn: virtjob.Connection) -> None:
    """A create job whose worker hands back something that is not a DomainRef (a driver bug)
    fails loudly on result(), naming the driver, instead of passing it on as a Domain."""
    job = domain_job(conn, _jobs(conn).start_job(JobKind.DOMAIN_CREATE, "web", lambda ctx: "web"))
    job.wait(SAFETY)
    with pytest.raises(virtjob.InternalError, match=r"yielded 'web'.*bug in the driver of test"):
        job.result()


def test_domain_job_gives_the_domain_s_own_job(slow_conn: virtjob.Connection) -> None:
    """Domain.job() is the public handle of the job at work on the domain: its kind, its
    result the domain (for a start) or None (for a save)."""
    dom = slow_conn.define_domain(WEB)
    assert dom.job() is None
    started = dom.start_job()
    mine = dom.job()
    assert mine == started
    assert mine is not None
    assert mine.kind is JobKind.DOMAIN_START
    assert mine.result(SAFETY) == dom
    assert mine.domain() == dom
    assert dom.job() is None
