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
from virtjob.jobs import Job, JobContext, JobKind, LocalJobDriver
from virtjob.jobs.local import hold_new_jobs

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


def test_a_job_is_recorded_before_it_starts(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "jobs.sqlite3"))
    recorder = Recorder(store, 1000)
    engine = LocalJobDriver(max_jobs=4)  # idle threads: a job would start at once
    seen: dict[str, bool] = {}

    def worker(ctx: JobContext) -> None:
        seen[ctx.id] = store.get_job(ctx.id) is not None

    try:
        jobs = []
        for n in range(50):
            with hold_new_jobs():  # as virtjobd starts every job
                job = engine.start_job(JobKind.DOMAIN_SAVE, f"d{n}", worker)
                recorder.track(job, "test:///x", None)
            jobs.append(job)
        for job in jobs:
            assert job.wait(SAFETY).state is JobState.SUCCEEDED
        assert seen == {job.id: True for job in jobs}
    finally:
        engine.close(timeout=SAFETY)
        recorder.close()
        store.close()


def test_a_job_that_cannot_be_recorded_never_runs(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "jobs.sqlite3"))
    recorder = Recorder(store, 10)
    engine = LocalJobDriver(max_jobs=1)
    ran = threading.Event()

    def worker(ctx: JobContext) -> None:
        ran.set()

    try:
        started: list[Job] = []

        def start() -> None:
            with hold_new_jobs():  # as virtjobd starts every job
                started.append(engine.start_job(JobKind.DOMAIN_SAVE, "b", worker))
                recorder.track(started[0], "test:///x", None)

        store.close()  # recording now fails
        with pytest.raises(OperationFailedError) as caught:
            start()
        [job] = started
        assert job.id in caught.value.message
        assert "cancelled" in caught.value.message
        assert engine.close(cancel=False, timeout=SAFETY)
        assert job.info().state is JobState.CANCELLED
        assert not ran.is_set()
        assert recorder.get(job.id) is None
    finally:
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
