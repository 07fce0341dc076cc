"""`hold_new_jobs`: jobs started inside the block wait to run until it ends.

A review of issue 10's fix found that a block that raised kept the thread it had reserved
for each held job (the job was cancelled but never queued, so no thread gave its reservation
back): every failed hold started one more thread, up to `max_jobs`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tests.jobs.conftest import SAFETY, job_threads
from virtjob.jobs import Job, JobContext, JobKind, JobState, LocalJobDriver
from virtjob.jobs.local import hold_new_jobs
from virtjob.jobs.record import Worker

MakeDriver = Callable[..., LocalJobDriver]


class _Boom(Exception):
    """What the test blocks raise."""


def _start_in_a_failing_hold(driver: LocalJobDriver, subject: str, worker: Worker) -> Job:
    """Start a job inside `hold_new_jobs`, then raise `_Boom` from the block (after noting the
    job in `_Boom.job`)."""
    with hold_new_jobs():
        job = driver.start_job(JobKind.DOMAIN_SAVE, subject, worker)
        raise _Boom(job)


def test_held_jobs_are_listed_and_run_in_order_once_the_block_ends(
    make_driver: MakeDriver,
) -> None:
    driver = make_driver(1)
    ran: list[str] = []

    def worker(ctx: JobContext) -> None:
        ran.append(ctx.subject)

    with hold_new_jobs():
        jobs = [driver.start_job(JobKind.DOMAIN_SAVE, f"d{n}", worker) for n in range(3)]
        assert [job.id for job in driver.list_jobs()] == [job.id for job in jobs]
        assert all(job.info().state is JobState.QUEUED for job in jobs)
        assert not ran
    for job in jobs:
        assert job.wait(SAFETY).state is JobState.SUCCEEDED
    assert ran == ["d0", "d1", "d2"]


def test_a_block_that_raises_cancels_its_jobs_and_gives_their_threads_back(
    make_driver: MakeDriver,
) -> None:
    driver = make_driver(8)
    before = job_threads()
    ran = threading.Event()

    def worker(ctx: JobContext) -> None:
        ran.set()

    held = []
    for n in range(6):
        with pytest.raises(_Boom) as raised:
            _start_in_a_failing_hold(driver, f"d{n}", worker)
        held.append(raised.value.args[0])
    assert [job.info().state for job in held] == [JobState.CANCELLED] * 6
    assert len(job_threads() - before) == 1, "each failed hold reused the one idle thread"
    job = driver.start_job(JobKind.DOMAIN_SAVE, "after", lambda ctx: threading.current_thread())
    assert job.wait(SAFETY).state is JobState.SUCCEEDED
    assert job.result() in job_threads() - before
    assert len(job_threads() - before) == 1
    assert not ran.is_set()


def test_a_held_job_cancelled_in_the_block_never_runs_and_frees_its_thread(
    make_driver: MakeDriver,
) -> None:
    driver = make_driver(1)
    with hold_new_jobs():
        cancelled = driver.start_job(JobKind.DOMAIN_SAVE, "c", lambda ctx: "ran")
        cancelled.cancel()
        assert cancelled.info().state is JobState.CANCELLED
    after = driver.start_job(JobKind.DOMAIN_SAVE, "a", lambda ctx: "ran")
    assert after.result(SAFETY) == "ran"
    assert cancelled.info().state is JobState.CANCELLED


@pytest.mark.parametrize("cancel", [True, False])
def test_closing_the_driver_during_a_hold_cancels_the_held_jobs(
    make_driver: MakeDriver, cancel: bool
) -> None:
    """A held job is a queued job: close() cancels it, even close(cancel=False); it never runs,
    and the block then ends without error."""
    driver = make_driver(2)
    ran = threading.Event()

    def worker(ctx: JobContext) -> None:
        ran.set()

    with hold_new_jobs():
        job = driver.start_job(JobKind.DOMAIN_SAVE, "d", worker)
        assert driver.close(cancel=cancel, timeout=SAFETY)
        info = job.info()
        assert (info.state, info.cancel_requested) == (JobState.CANCELLED, True)
    assert job.wait(SAFETY).state is JobState.CANCELLED
    assert not ran.is_set()


def test_a_nested_block_that_raises_cancels_only_its_own_jobs(make_driver: MakeDriver) -> None:
    driver = make_driver(2)
    with hold_new_jobs():
        outer = driver.start_job(JobKind.DOMAIN_SAVE, "outer", lambda ctx: "outer")
        with pytest.raises(_Boom) as raised:
            _start_in_a_failing_hold(driver, "inner", lambda ctx: "inner")
        inner = raised.value.args[0]
        assert inner.info().state is JobState.CANCELLED
        assert outer.info().state is JobState.QUEUED
    assert outer.result(SAFETY) == "outer"
