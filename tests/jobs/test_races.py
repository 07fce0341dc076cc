"""Races between callers and worker threads, provoked with a tiny GIL switch interval.

These tests cannot fail on a correct engine; on a racy one they fail in some runs only
(there is no hook to force the interleaving), so they guard against regressions rather
than prove the absence of races.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from tests.jobs.conftest import SAFETY
from virtjob.jobs import Job, JobContext, JobKind, JobState, LocalJobDriver

ROUNDS = 4000


@pytest.fixture
def tiny_switch_interval() -> Iterator[None]:
    """Make the interpreter switch threads as often as it can, to widen race windows."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.mark.usefixtures("tiny_switch_interval")
def test_cancel_racing_with_the_start_of_a_queued_job_is_clean(
    make_driver: Callable[..., LocalJobDriver],
) -> None:
    """Cancelling a job just as a thread picks it up never raises, and never lets a worker
    run for a job that ends CANCELLED (it either never runs, or runs as a cancelled RUNNING
    job and finishes as its worker decides)."""
    driver = make_driver(1)
    ran: set[str] = set()
    lock = threading.Lock()

    def worker(ctx: JobContext) -> str:
        with lock:
            ran.add(ctx.id)
        return ctx.id

    racers: list[Job[str]] = []
    for _ in range(ROUNDS):
        driver.start_job(JobKind.DOMAIN_SAVE, "head", lambda ctx: None)
        racer = driver.start_job(JobKind.DOMAIN_SAVE, "racer", worker)
        racer.cancel()  # must not raise, whatever the worker thread is doing
        assert racer.info().state is not JobState.QUEUED
        racers.append(racer)
    assert driver.close(timeout=SAFETY)
    for racer in racers:
        state = racer.wait(SAFETY).state
        if racer.id in ran:
            assert state is JobState.SUCCEEDED, f"{racer.id} ran but ended {state}"
        else:
            assert state is JobState.CANCELLED
