"""virtjobd follows its live jobs with a fixed pool of threads, and records a job before it runs.

Issue 10, finding 7: 3,000 queued jobs used to make 3,041 daemon threads (one watcher thread
per live job), and when the system refused a thread the request failed with a 500 while its
job ran on, unrecorded.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.daemon.conftest import SAFETY, SLOW_RATE, DaemonProcess, new_host, running
from virtjob import JobState
from virtjob.daemon.recorder import WATCHERS, Recorder
from virtjob.daemon.store import Store
from virtjob.errors import OperationFailedError
from virtjob.jobs import JobContext, JobKind, LocalJobDriver

QUEUED = 500

DOMAIN = "<domain type='test'><name>{name}</name><memory unit='MiB'>4096</memory></domain>"
"""A domain whose boot takes 32 s at `SLOW_RATE`: the jobs after the first 16 stay queued."""


def _threads(daemon: DaemonProcess) -> int:
    """The number of threads of the daemon process, as the kernel counts them."""
    assert daemon.proc is not None
    with open(f"/proc/{daemon.proc.pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads: line in /proc/PID/status")


@pytest.mark.slow
def test_hundreds_of_queued_jobs_share_a_bounded_pool_of_watchers() -> None:
    with running() as daemon, daemon.open(new_host(), rate=SLOW_RATE) as conn:
        first = conn.create_domain_job(DOMAIN.format(name="warm-up"))  # opens the host
        first.cancel()
        first.wait(SAFETY)
        before = _threads(daemon)
        jobs = [conn.create_domain_job(DOMAIN.format(name=f"q{n}")) for n in range(QUEUED)]
        after = _threads(daemon)
        states = [job.info().state for job in jobs]
        assert states.count(JobState.QUEUED) >= QUEUED - 16, "most of them wait in the queue"
        # The host's 16 job threads and the server's request threads may grow; one thread
        # per live job (the old watcher) would add 500.
        assert after - before < 60, (before, after)
        listed = {job.id for job in conn.list_jobs()}
        assert {job.id for job in jobs} <= listed, "every job is recorded"
        for job in jobs:
            job.cancel()
        for job in jobs:
            assert job.wait(SAFETY).state is JobState.CANCELLED


def test_a_job_that_cannot_be_recorded_is_cancelled_not_left_running(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "jobs.sqlite3"))
    recorder = Recorder(store, 10)
    engine = LocalJobDriver(max_jobs=1)
    release = threading.Event()

    def blocker(ctx: JobContext) -> None:
        ctx.initialize(bounded=False)
        release.wait(SAFETY)

    try:
        busy = engine.start_job(JobKind.DOMAIN_SAVE, "a", blocker)
        recorder.track(busy, "test:///x", None)
        queued = engine.start_job(JobKind.DOMAIN_SAVE, "b", blocker)
        assert queued.info().state is JobState.QUEUED
        store.close()  # recording now fails
        with pytest.raises(OperationFailedError) as caught:
            recorder.track(queued, "test:///x", None)
        assert queued.id in caught.value.message
        assert "cancelled" in caught.value.message
        assert queued.info().state is JobState.CANCELLED  # it never ran
        assert recorder.get(queued.id) is None
    finally:
        release.set()
        engine.close(timeout=SAFETY)
        recorder.close()


def _watchers() -> int:
    return sum(thread.name.startswith("virtjobd-watch-") for thread in threading.enumerate())


def test_one_recorder_follows_many_jobs_with_its_fixed_threads(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "jobs.sqlite3"))
    engine = LocalJobDriver(max_jobs=1)
    release = threading.Event()

    def blocker(ctx: JobContext) -> None:
        release.wait(SAFETY)

    watchers = _watchers()
    recorder = Recorder(store, 1000)
    try:
        assert _watchers() == watchers + WATCHERS
        before = threading.active_count()
        jobs = [engine.start_job(JobKind.DOMAIN_SAVE, f"d{n}", blocker) for n in range(200)]
        for job in jobs:
            recorder.track(job, "test:///x", None)
        assert threading.active_count() - before <= 1  # the engine's one job thread
        release.set()
        for job in jobs:
            assert job.wait(SAFETY).state is JobState.SUCCEEDED
        engine.close(timeout=SAFETY)  # the done callbacks (which record the end) have run
        rows = {row.id: row for row in store.list_jobs()}
        assert all(rows[job.id].state == "succeeded" for job in jobs)
    finally:
        release.set()
        engine.close(timeout=SAFETY)
        recorder.close()
        store.close()
    assert _watchers() == watchers
