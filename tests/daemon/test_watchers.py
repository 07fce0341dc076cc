"""virtjobd follows its live jobs with a fixed pool of threads, and records a job before it runs.

Issue 10, finding 7: 3,000 queued jobs used to make 3,041 daemon threads (one watcher thread
per live job), and when the system refused a thread the request failed with a 500 while its
job ran on, unrecorded.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from tests.daemon.conftest import SAFETY, SLOW_RATE, DaemonProcess, new_host, running
from virtjob import JobState
from virtjob.api import JobDocument
from virtjob.daemon.recorder import WATCHERS, Recorder
from virtjob.daemon.store import Store
from virtjob.errors import OperationFailedError
from virtjob.jobs import Job, JobContext, JobKind, LocalJobDriver
from virtjob.jobs.local import hold_new_jobs

QUEUED = 500
HOST = "test:///x"
"""The host the engines of these tests run jobs for (each job's document names it)."""

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
    # creates under way count against --max-domains: let these hundreds in
    with (
        running(extra=["--max-domains", str(QUEUED + 8)]) as daemon,
        daemon.open(new_host(), rate=SLOW_RATE) as conn,
    ):
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
    engine = LocalJobDriver(max_jobs=4, host=HOST)  # idle threads: a job would start at once
    seen: dict[str, bool] = {}

    def worker(ctx: JobContext) -> None:
        seen[ctx.id] = store.get_job(ctx.id) is not None

    try:
        jobs = []
        for n in range(50):
            with hold_new_jobs():  # as virtjobd starts every job
                job = engine.start_job(JobKind.DOMAIN_SAVE, f"d{n}", worker)
                recorder.track(job, HOST)
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
    engine = LocalJobDriver(max_jobs=1, host=HOST)
    ran = threading.Event()

    def worker(ctx: JobContext) -> None:
        ran.set()

    try:
        started: list[Job] = []

        def start() -> None:
            with hold_new_jobs():  # as virtjobd starts every job
                started.append(engine.start_job(JobKind.DOMAIN_SAVE, "b", worker))
                recorder.track(started[0], HOST)

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
    engine = LocalJobDriver(max_jobs=1, host=HOST)
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
            recorder.track(job, HOST)
        assert threading.active_count() - before <= 1  # the engine's one job thread
        release.set()
        for job in jobs:
            assert job.wait(SAFETY).state is JobState.SUCCEEDED
        engine.close(timeout=SAFETY)  # the done callbacks (which record the end) have run
        stored = {document.id: document for document in store.list_jobs()}
        assert all(stored[job.id].info.state is JobState.SUCCEEDED for job in jobs)
    finally:
        release.set()
        engine.close(timeout=SAFETY)
        recorder.close()
        store.close()
    assert _watchers() == watchers


class _GatedStore(Store):
    """A real store whose progress write for one job (`gate`) waits until `release` is set,
    so the test can let changes of other jobs pile up on the watcher's feed meanwhile."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gate = ""
        self.entered = threading.Event()
        self.release = threading.Event()
        self.written: dict[str, threading.Event] = {}

    def update_progress(self, document: JobDocument) -> None:
        if document.id == self.gate:
            self.entered.set()
            self.release.wait(SAFETY)
        super().update_progress(document)
        self.written.setdefault(document.id, threading.Event()).set()

    def wrote(self, job_id: str) -> threading.Event:
        """Set once a progress snapshot of `job_id` has been written."""
        return self.written.setdefault(job_id, threading.Event())


def _fail_updates_of(path: str, subject: str) -> None:
    """Make SQLite itself refuse every update of the rows of jobs on `subject` (a trigger)."""
    db = sqlite3.connect(path)
    try:
        db.execute(
            f"CREATE TRIGGER refuse_{subject} BEFORE UPDATE ON jobs"
            f" WHEN json_extract(OLD.document, '$.subject') = '{subject}'"
            f" BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
        )
        db.commit()
    finally:
        db.close()


def test_a_store_error_on_one_job_does_not_cost_the_others_their_update(tmp_path: Path) -> None:
    """The watcher used to wrap a whole batch of changed jobs in one try: a store error on one
    dropped the updates of the jobs after it, whose streams then stayed stale."""
    path = str(tmp_path / "jobs.sqlite3")
    store = _GatedStore(path)
    _fail_updates_of(path, "bad")
    recorder = Recorder(store, 1000, watchers=1)
    engine = LocalJobDriver(max_jobs=3, host=HOST)
    release = threading.Event()
    started = {name: threading.Event() for name in ("gate", "bad", "good")}

    def worker(ctx: JobContext) -> None:
        started[ctx.subject].set()
        release.wait(SAFETY)

    try:
        gate = engine.start_job(JobKind.DOMAIN_SAVE, "gate", worker)
        store.gate = gate.id
        recorder.track(gate, HOST)
        assert store.entered.wait(SAFETY), "the watcher writes the gate job's start"
        jobs = {}
        for name in ("bad", "good"):  # both change while the watcher is held up: one batch
            jobs[name] = engine.start_job(JobKind.DOMAIN_SAVE, name, worker)
            recorder.track(jobs[name], HOST)
            assert started[name].wait(SAFETY)
        store.release.set()
        assert store.wrote(jobs["good"].id).wait(SAFETY), "good's start is stored"
        good = store.get_job(jobs["good"].id)
        assert good is not None
        assert good.info.state is JobState.RUNNING
        tracked = recorder.get(jobs["good"].id)
        assert tracked is not None
        assert tracked.channel.info.state is JobState.RUNNING
        bad = store.get_job(jobs["bad"].id)
        assert bad is not None
        assert bad.info.state is JobState.QUEUED, "the store refused it"
    finally:
        store.release.set()
        release.set()
        engine.close(timeout=SAFETY)
        recorder.close()
        store.close()


def _blocked_job(
    engine: LocalJobDriver, recorder: Recorder, subject: str
) -> tuple[Job, threading.Event, threading.Event]:
    """A tracked job that ends at once and whose done callback after the recorder's blocks
    until the second event returned is set; the first is set while it blocks."""
    go = threading.Event()
    blocked, unblock = threading.Event(), threading.Event()
    job = engine.start_job(JobKind.DOMAIN_SAVE, subject, lambda ctx: go.wait(SAFETY))
    recorder.track(job, HOST)

    def block(_job: Job) -> None:
        blocked.set()
        unblock.wait(4 * SAFETY)  # outlasts any bound the test waits with: the test sets it

    job.add_done_callback(block)
    go.set()
    assert blocked.wait(SAFETY)
    return job, blocked, unblock


def test_a_job_that_ends_never_waits_for_the_callbacks_of_one_it_prunes(tmp_path: Path) -> None:
    """Pruning used to destroy the pruned job from the done callback of the job that ended,
    which waits for the pruned job's own done callbacks: two jobs ending together could each
    wait for the other."""
    store = Store(str(tmp_path / "jobs.sqlite3"))
    recorder = Recorder(store, 1, unseen_hold=0.0)
    engine = LocalJobDriver(max_jobs=2, host=HOST)
    unblock = threading.Event()
    try:
        old, _, unblock = _blocked_job(engine, recorder, "old")  # ended; its callback blocks
        go, done = threading.Event(), threading.Event()
        new = engine.start_job(JobKind.DOMAIN_SAVE, "new", lambda ctx: go.wait(SAFETY))
        recorder.track(new, HOST)
        new.add_done_callback(lambda _job: done.set())  # runs after the recorder's
        go.set()  # its end prunes the old job (the limit is 1)
        assert done.wait(SAFETY), "the new job's callbacks ran while the old one's block"
        assert [document.id for document in store.list_jobs()] == [new.id]
        assert recorder.get(old.id) is None
    finally:
        unblock.set()
        engine.close(timeout=SAFETY)
        recorder.close()
        store.close()


def test_a_long_poll_that_lets_a_job_go_does_not_wait_for_its_callbacks(tmp_path: Path) -> None:
    """The end of a long poll (on the event loop) used to prune and destroy the job it let go
    right there, waiting for that job's done callbacks: a blocked event loop."""
    store = Store(str(tmp_path / "jobs.sqlite3"))
    recorder = Recorder(store, 0)  # kept only while someone may wait for it
    engine = LocalJobDriver(max_jobs=1, host=HOST)
    unblock = threading.Event()
    try:
        job, _, unblock = _blocked_job(engine, recorder, "d")
        assert [doc.id for doc in store.list_jobs()] == [job.id], "held: nobody has seen it"
        answer: Future[JobDocument] = Future()

        def poll() -> None:
            try:
                answer.set_result(asyncio.run(recorder.wait(job.id, SAFETY)))
            except BaseException as exc:
                answer.set_exception(exc)

        threading.Thread(target=poll, daemon=True).start()
        document = answer.result(SAFETY)  # the long poll returned while the callback blocks
        assert document.info.state is JobState.SUCCEEDED
        assert store.list_jobs() == [], "seen: the limit let it go"
        assert recorder.get(job.id) is None
    finally:
        unblock.set()
        engine.close(timeout=SAFETY)
        recorder.close()
        store.close()
