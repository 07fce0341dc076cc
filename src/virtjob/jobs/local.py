"""`LocalJobDriver`: runs jobs on a bounded pool of threads in this process."""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from queue import SimpleQueue
from typing import TYPE_CHECKING, TypeVar

from virtjob.errors import (
    InternalError,
    InvalidArgError,
    JobTimeoutError,
    NoJobError,
    OperationFailedError,
    OperationInvalidError,
    VirtError,
)
from virtjob.jobs.context import JobContext
from virtjob.jobs.feed import ChangeFeed
from virtjob.jobs.job import Job
from virtjob.jobs.record import CancelHook, JobRecord, log_transition
from virtjob.jobs.types import JobInfo, JobKind, JobOutcome, JobState

if TYPE_CHECKING:
    from virtjob.api.document import JobDocument

log = logging.getLogger("virtjob.jobs")
T = TypeVar("T")

_live_drivers: weakref.WeakSet[LocalJobDriver] = weakref.WeakSet()
_driver_numbers = itertools.count(1)
EXIT_GRACE = 10.0
"""Seconds the interpreter waits at exit for cancelled jobs to wind down."""
_holding = threading.local()
"""``jobs``: the list `hold_new_jobs` collects this thread's new jobs in, while it runs."""
_Held = tuple["LocalJobDriver", JobRecord, bool]
"""A job `hold_new_jobs` holds back: its driver, its record, whether a thread is reserved."""


@contextlib.contextmanager
def hold_new_jobs() -> Iterator[None]:
    """Jobs this thread starts on a `LocalJobDriver` inside the block wait to run until it ends.

    Lets a caller record a job before it can start (virtjobd writes its row). They are listed
    and cancellable meanwhile, and queued in order when the block ends normally; if the block
    raises, they are cancelled without ever having run. Jobs of other job drivers (the remote
    one) are not held. Closing the driver meanwhile cancels them like any queued job. Raises
    nothing of its own.
    """
    held: list[_Held] = []
    outer = getattr(_holding, "jobs", None)
    _holding.jobs = held
    released = False
    try:
        yield
        released = True
    finally:
        _holding.jobs = outer
        for driver, record, reserved in held:
            driver._release_held(record, reserved, run=released)


def _new_job_id() -> str:
    # What secrets.token_hex(6) returns, without importing secrets (hmac, OpenSSL's hashlib,
    # random) at every start of virtjob.
    return os.urandom(6).hex()


class LocalJobDriver:
    """Runs jobs on up to `max_jobs` threads; jobs beyond that wait in a FIFO queue.

    Threads are started as work arrives and stay for the next job; they never keep the process
    alive. At interpreter exit, unfinished jobs are cancelled and given `EXIT_GRACE` seconds to
    wind down, so nothing is left half-done. `close()` does the same on demand.
    Implements the `JobDriver` protocol for the `Job` handles it returns.
    """

    def __init__(
        self,
        max_jobs: int = 8,
        *,
        id_factory: Callable[[], str] = _new_job_id,
        host: str = "",
    ) -> None:
        """`host` names whoever runs the jobs (a host's URI) in their documents.

        Raises `InvalidArgError` if `max_jobs` is below 1.
        """
        if max_jobs < 1:
            raise InvalidArgError(f"max_jobs must be at least 1, got {max_jobs}")
        self.max_jobs = max_jobs
        self.host = host
        self._new_id = id_factory
        self._lock = threading.Lock()
        self._records: dict[str, JobRecord] = {}
        self._holders: dict[str, JobRecord] = {}
        self._queue: SimpleQueue[JobRecord | None] = SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._name = f"virtjob-jobs-{next(_driver_numbers)}"
        _live_drivers.add(self)

    # -- starting ----------------------------------------------------------------------------

    def start_job(
        self,
        kind: JobKind,
        subject: str,
        worker: Callable[[JobContext], T],
        on_cancel: CancelHook | None = None,
        *,
        lock_key: str | None = None,
        target: str | None = None,
    ) -> Job[T]:
        """Queue `worker(ctx)` as a new job and return its handle at once.

        The handle is typed by what `worker` returns: the job's result when it succeeds. (A
        worker that ends its job with ``ctx.finish_success(value)`` declares the type of
        `value` as its return type, or `object`.)
        `target` names the file the job writes, if any (shown in its document).
        `on_cancel()` is called once, from the cancelling thread, when a running job is asked
        to stop (it may run just after the worker has finished). `lock_key`, when given, makes
        the job exclusive: while another job with the same key is queued or running, this one
        is refused with `OperationInvalidError` naming that job. Raises `OperationInvalidError`
        after `close()`.
        """
        with self._lock:
            if self._closed:
                raise OperationInvalidError(
                    f"cannot start a {kind} job on {subject!r}: the job driver is closed"
                )
            if lock_key is not None:
                holder = self._holders.get(lock_key)
                if holder is not None and not holder.state.terminal:
                    raise OperationInvalidError(
                        f"{holder.subject!r} is busy with {holder.kind} job {holder.id}"
                        f" ({holder.state}); wait for it or cancel it first"
                    )
            job_id = self._new_id()
            while job_id in self._records:
                job_id = self._new_id()
            record = JobRecord(
                job_id, kind, subject, worker, on_cancel, lock_key, self._ended, target
            )
            try:
                reserved = self._add_thread_if_needed()
            except RuntimeError as exc:  # the system refused a new thread
                raise OperationFailedError(
                    f"cannot start a {kind} job on {subject!r}: no thread to run it ({exc});"
                    f" try again when fewer jobs run"
                ) from exc
            self._records[job_id] = record
            if lock_key is not None:
                self._holders[lock_key] = record
            held: list[_Held] | None = getattr(_holding, "jobs", None)
            # Logged before a thread can pick the job up, so that its log reads in order.
            log_transition(record, "queued" if held is None else "queued, held until released")
            if held is None:
                self._queue.put(record)
            else:
                held.append((self, record, reserved))
        return Job(self, job_id, kind, subject)

    def _release_held(self, record: JobRecord, reserved: bool, *, run: bool) -> None:
        """Queue a job `hold_new_jobs` held back or, with `run` False, cancel it.

        `reserved` says whether `start_job` reserved a thread for it (an idle one's permit, or
        a new thread). A queued job's thread gives that back once done with it (skipping it if
        it was cancelled meanwhile); a job that never reaches the queue gives it back here, or
        the thread would idle uncounted and the next job would start another one.
        """
        if run:
            self._queue.put(record)
            return
        record.request_cancel()
        if reserved:
            self._idle.release()

    def _add_thread_if_needed(self) -> bool:
        """Reserve a thread for one more job: an idle one, else a new one below `max_jobs`.

        Returns False when every thread is busy and there are `max_jobs` of them (the job waits
        for the first one free). Called with `_lock` held; raises `RuntimeError` if the system
        refuses a thread.
        """
        if self._idle.acquire(blocking=False):
            return True
        if len(self._threads) < self.max_jobs:
            thread = threading.Thread(
                target=self._work, name=f"{self._name}-{len(self._threads) + 1}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
            return True
        return False

    def _work(self) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                return
            try:
                if record.begin():
                    self._run(record)
            except BaseException:  # a callback raising SystemExit must not kill the pool
                log.exception("job %s: error escaped its worker", record.id)
            finally:
                self._idle.release()

    @staticmethod
    def _run(record: JobRecord) -> None:
        worker = record.worker
        assert worker is not None
        ctx = JobContext(record)
        try:
            value = worker(ctx)
        except VirtError as exc:
            error: VirtError = exc
        except BaseException as exc:
            log.error(
                "worker of job %s (%s of %r) raised",
                record.id,
                record.kind,
                record.subject,
                exc_info=exc,
            )
            error = InternalError(
                f"job {record.id} ({record.kind} of {record.subject!r}) failed unexpectedly:"
                f" {type(exc).__name__}: {exc}; this is a bug, see the log for the traceback"
            )
            error.__cause__ = exc
        else:
            if not record.state.terminal:
                record.end(JobState.SUCCEEDED, value, None)
            elif value is not None:
                log.warning("job %s: worker returned a value after finishing; ignored", record.id)
            return
        if record.state.terminal:
            log.error("worker of job %s raised after finishing it", record.id, exc_info=error)
        else:
            record.end(JobState.FAILED, None, error)

    def _ended(self, record: JobRecord) -> None:
        if record.lock_key is not None:
            with self._lock:
                if self._holders.get(record.lock_key) is record:
                    del self._holders[record.lock_key]

    def busy_with(self, lock_key: str) -> Job[object] | None:
        """Return the queued or running job holding `lock_key`, or None if it is free."""
        with self._lock:
            holder = self._holders.get(lock_key)
            if holder is None or holder.state.terminal:
                return None
            return Job(self, holder.id, holder.kind, holder.subject)

    # -- listing -----------------------------------------------------------------------------

    def list_jobs(self) -> list[Job[object]]:
        """Return handles for every job not yet destroyed, oldest first."""
        with self._lock:
            records = list(self._records.values())
        return [Job(self, r.id, r.kind, r.subject) for r in records]

    def lookup_job(self, job_id: str) -> Job[object]:
        """Return the handle of job `job_id`; raises `NoJobError` if there is none."""
        record = self._record(job_id)
        return Job(self, record.id, record.kind, record.subject)

    def _record(self, job_id: str) -> JobRecord:
        record = self._records.get(job_id)  # a single dict read needs no lock
        if record is None:
            raise NoJobError(
                f"no job with id {job_id!r} on this host; list jobs to see the ids that exist"
            )
        return record

    # -- the JobDriver protocol --------------------------------------------------------------

    def job_info(self, job_id: str) -> JobInfo:
        """Return a snapshot of the job's progress; `NoJobError` if unknown."""
        return self._record(job_id).info()

    def job_cancel(self, job_id: str) -> None:
        """Ask the job to stop; `NoJobError` if unknown."""
        self._record(job_id).request_cancel()

    def job_wait(self, job_id: str, timeout: float | None) -> JobInfo:
        """Wait for the job to end; `JobTimeoutError` on timeout, `NoJobError` if unknown."""
        record = self._record(job_id)
        done, info = record.wait_terminal(timeout)
        if not done:
            raise JobTimeoutError(
                f"job {job_id} ({record.kind} of {record.subject!r}) is still {info.state}"
                f" after {timeout} s; it goes on: wait again or cancel it"
            )
        return info

    def job_watch(self, job_id: str, interval: float) -> Iterator[JobInfo]:
        """Iterate over the job's changes; `NoJobError` if unknown."""
        return self._record(job_id).watch(interval)

    def job_outcome(self, job_id: str) -> JobOutcome | None:
        """Return how the job ended, None while it runs; `NoJobError` if unknown."""
        return self._record(job_id).outcome()

    def job_document(self, job_id: str) -> JobDocument:
        """Return everything known about the job (`virtjob.api.JobDocument`); `NoJobError`
        if unknown."""
        from virtjob.api.document import JobDocument  # the engine's one wire type

        record = self._record(job_id)
        with record.lock:
            info = record.snapshot()
            outcome = (
                JobOutcome(record.state, record.result, record.error)
                if record.state.terminal
                else None
            )
            created, started, ended = record.times()
            progressed = record.wall(record.percent_at)
        return JobDocument.build(
            job_id=record.id,
            host=self.host,
            kind=record.kind,
            subject=record.subject,
            info=info,
            outcome=outcome,
            target=record.target,
            created=created,
            started=started,
            ended=ended,
            progressed=progressed,
        )

    def job_add_done_callback(self, job_id: str, fn: Callable[[], None]) -> None:
        """Call `fn()` when the job ends (at once if it has); `NoJobError` if unknown."""
        self._record(job_id).add_done_callback(fn)

    def job_follow(self, job_id: str, feed: ChangeFeed) -> None:
        """Mark `feed` with the job's id at once and on every later change.

        Lets one thread follow many jobs (see `ChangeFeed`). A job marks one feed: following it
        again with the same feed only marks it; `OperationInvalidError` if another feed follows
        it already, `NoJobError` if the job is unknown.
        """
        record = self._record(job_id)
        with record.lock:
            if record.feed is not None and record.feed is not feed:
                raise OperationInvalidError(
                    f"job {job_id} ({record.kind} of {record.subject!r}) is followed by another"
                    f" ChangeFeed already; a job marks one feed: read that feed's changes instead"
                )
            record.feed = feed
            feed.mark(job_id)

    def job_destroy(self, job_id: str) -> None:
        """Forget a finished job; `OperationInvalidError` while it runs, `NoJobError` if unknown."""
        self._record(job_id).wait_settled()
        with self._lock:
            record = self._record(job_id)
            state = record.state
            if not state.terminal:
                raise OperationInvalidError(
                    f"job {job_id} ({record.kind} of {record.subject!r}) is still {state};"
                    f" cancel it or wait for it before destroying it"
                )
            del self._records[job_id]

    # -- shutting down -----------------------------------------------------------------------

    def close(self, *, cancel: bool = True, timeout: float | None = None) -> bool:
        """Stop taking jobs, cancel queued ones and (if `cancel`) running ones, and end the threads.

        Jobs `hold_new_jobs` holds back count as queued: they are cancelled, even with `cancel`
        False, and never run. Waits up to `timeout` seconds (None: no limit) for running jobs
        to end and the threads to exit; returns True if they all did. Finished job records
        stay readable. Calling it again is harmless.
        """
        self._shut(cancel=cancel)
        return self._join(None if timeout is None else time.monotonic() + timeout)

    def _shut(self, *, cancel: bool) -> None:
        """Stop taking jobs, cancel what should not run on, and tell the threads to exit."""
        with self._lock:
            first = not self._closed
            self._closed = True
            records = list(self._records.values())
            threads = len(self._threads)
        for record in records:
            record.request_cancel(queued_only=not cancel)
        if first:
            for _ in range(threads):
                self._queue.put(None)

    def _join(self, deadline: float | None) -> bool:
        """Wait until `deadline` for the threads to exit; return True if they all did."""
        current = threading.current_thread()
        with self._lock:
            threads = [thread for thread in self._threads if thread is not current]
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def unfinished(self) -> list[Job[object]]:
        """Return the jobs not yet final, oldest first."""
        with self._lock:
            records = [r for r in self._records.values() if not r.state.terminal]
        return [Job(self, r.id, r.kind, r.subject) for r in records]

    def __repr__(self) -> str:
        return f"<LocalJobDriver {self._name} max_jobs={self.max_jobs} jobs={len(self._records)}>"


@atexit.register
def _close_all_at_exit() -> None:
    drivers = list(_live_drivers)
    for driver in drivers:
        driver._shut(cancel=True)
    deadline = time.monotonic() + EXIT_GRACE
    for driver in drivers:
        if not driver._join(deadline):
            stuck = ", ".join(
                f"{job.id} ({job.kind} of {job.subject!r})" for job in driver.unfinished()
            )
            log.warning("exiting with jobs that did not stop within %s s: %s", EXIT_GRACE, stuck)
