"""`JobRecord`: the state of one job run in this process, guarded by one Condition.

The record is shared by three parties: the `LocalJobDriver` that queues and runs it, the
`JobContext` through which the worker reports progress, and the callers who read, wait on and
cancel it. All fields are read and written under `lock`; `cond` (built on that lock) wakes
waiters and watchers. Nothing here calls out to user code while holding the lock.

Every step of a job's life is logged at DEBUG on the ``virtjob.jobs`` logger by one function,
`log_transition`: queued, running, cancel requested, and its end (succeeded, failed with the
error and its traceback, cancelled), each with the job's id, kind and subject.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from threading import Condition, Lock
from typing import TYPE_CHECKING

from virtjob.errors import InternalError, VirtError
from virtjob.jobs.types import JobInfo, JobKind, JobOutcome, JobState

if TYPE_CHECKING:
    from virtjob.jobs.context import JobContext
    from virtjob.jobs.feed import ChangeFeed

log = logging.getLogger("virtjob.jobs")

Worker = Callable[["JobContext"], object]
CancelHook = Callable[[], None]
_monotonic = time.monotonic
_DEBUG = logging.DEBUG


def log_transition(record: JobRecord, step: str, *, final: bool = False) -> None:
    """Log `step` of `record`'s life at DEBUG: "queued", "running", "cancel requested", or
    (`final`) how it ended, with how long it ran and a failure's error and traceback. The one
    place the engine tells a job's story; costs one level check when DEBUG is off. Never
    called holding the job's own lock (a handler may be slow): a final job's fields no longer
    change. "queued" is logged under the job driver's lock, before a thread can start the job,
    so that the story reads in order. Raises nothing."""
    if not log.isEnabledFor(_DEBUG):
        return
    if not final or not record.started_at:
        log.debug("job %s (%s of %r): %s", record.id, record.kind, record.subject, step)
        return
    ran = record.ended_at - record.started_at
    if record.error is None:
        log.debug(
            "job %s (%s of %r): %s after running %.3f s",
            record.id,
            record.kind,
            record.subject,
            step,
            ran,
        )
        return
    log.debug(
        "job %s (%s of %r): %s after running %.3f s: %s: %s",
        record.id,
        record.kind,
        record.subject,
        step,
        ran,
        type(record.error).__name__,
        record.error,
        exc_info=record.error,
    )


class JobRecord:
    """One job's mutable state. Internal to the engine: callers hold `Job`, workers `JobContext`."""

    __slots__ = (
        "_waiting",
        "_watching",
        "bounded",
        "callbacks",
        "cancel_requested",
        "cond",
        "created_at",
        "created_mono",
        "ended_at",
        "error",
        "eta",
        "eta_at",
        "feed",
        "id",
        "initialized",
        "kind",
        "lock",
        "lock_key",
        "on_cancel",
        "on_end",
        "origin_at",
        "origin_percent",
        "percent",
        "percent_at",
        "processed",
        "result",
        "settled",
        "settler",
        "started_at",
        "state",
        "subject",
        "target",
        "total",
        "version",
        "worker",
    )

    def __init__(
        self,
        job_id: str,
        kind: JobKind,
        subject: str,
        worker: Worker,
        on_cancel: CancelHook | None,
        lock_key: str | None,
        on_end: Callable[[JobRecord], None],
        target: str | None = None,
    ) -> None:
        self.lock = Lock()
        self.cond: Condition | None = None  # made on the first wait: most jobs never need one
        self._waiting = 0
        self._watching = 0
        self.settled = False
        self.settler = 0
        self.id = job_id
        self.kind = kind
        self.subject = subject
        self.worker: Worker | None = worker
        self.on_cancel: CancelHook | None = on_cancel
        self.lock_key = lock_key
        self.on_end: Callable[[JobRecord], None] | None = on_end
        self.state = JobState.QUEUED
        self.version = 0
        self.target = target
        self.created_at = time.time()
        self.created_mono = _monotonic()
        self.started_at = 0.0
        self.ended_at = 0.0
        self.initialized = False
        self.bounded = False
        self.percent: float | None = None
        self.percent_at = 0.0
        self.origin_at = 0.0
        self.origin_percent = 0.0
        self.eta: float | None = None
        self.eta_at = -1.0
        self.processed: int | None = None
        self.total: int | None = None
        self.cancel_requested = False
        self.result: object = None
        self.error: VirtError | None = None
        self.callbacks: list[Callable[[], None]] | None = []
        self.feed: ChangeFeed | None = None  # `LocalJobDriver.job_follow`

    # -- reading ---------------------------------------------------------------------------

    def snapshot(self) -> JobInfo:
        """Return the current `JobInfo`. The caller holds `lock`."""
        state = self.state
        if state is JobState.QUEUED:
            elapsed = 0.0
            remaining: float | None = None
        elif state is JobState.RUNNING:
            now = _monotonic()
            elapsed = now - self.started_at
            remaining = self._remaining(now)
        else:
            elapsed = self.ended_at - self.started_at if self.started_at else 0.0
            remaining = 0.0
        return JobInfo(
            state,
            self.bounded,
            elapsed,
            remaining,
            self.percent,
            self.processed,
            self.total,
            self.cancel_requested,
        )

    def _remaining(self, now: float) -> float | None:
        if not self.initialized:
            return None
        eta = self.eta
        if eta is not None and self.eta_at >= self.percent_at:
            return max(0.0, eta - (now - self.eta_at))
        percent = self.percent
        if (
            percent is not None
            and percent > self.origin_percent
            and self.percent_at > self.origin_at
        ):
            rate = (percent - self.origin_percent) / (self.percent_at - self.origin_at)
            return max(0.0, (100.0 - percent) / rate - (now - self.percent_at))
        return None if eta is None else max(0.0, eta - (now - self.eta_at))

    def times(self) -> tuple[float, float | None, float | None]:
        """When the job was created, started and ended, as wall-clock times (None: not yet).
        The caller holds `lock`."""
        return self.created_at, self.wall(self.started_at), self.wall(self.ended_at)

    def wall(self, moment: float) -> float | None:
        """`moment` (a monotonic time of this job; 0: never) as a wall-clock time, or None."""
        return moment + (self.created_at - self.created_mono) if moment else None

    def info(self) -> JobInfo:
        """Return the current `JobInfo`."""
        with self.lock:
            return self.snapshot()

    def outcome(self) -> JobOutcome | None:
        """Return how the job ended, or None while it has not."""
        with self.lock:
            if not self.state.terminal:
                return None
            return JobOutcome(self.state, self.result, self.error)

    # -- waiting ---------------------------------------------------------------------------

    def changed(self, *, wake_all: bool = False) -> None:
        """Record a change and wake the watchers. The caller holds `lock`.

        Progress reports wake only threads watching every change; `wake_all` (for state
        changes and cancel requests) also wakes those waiting for the end or for a cancel.
        """
        self.version += 1
        if self.feed is not None:
            self.feed.mark(self.id)
        if self._watching or (wake_all and self._waiting):
            assert self.cond is not None
            self.cond.notify_all()

    def _wait(
        self, predicate: Callable[[], bool], timeout: float | None, *, watching: bool = False
    ) -> bool:
        """Wait (holding `lock`) until `predicate()` or the timeout; return the predicate."""
        if self.cond is None:
            self.cond = Condition(self.lock)
        self._waiting += 1
        self._watching += watching
        try:
            return self.cond.wait_for(predicate, timeout)
        finally:
            self._waiting -= 1
            self._watching -= watching
            if not self._waiting and self.settled:
                self.cond = None  # a finished job keeps no Condition (~1 KB) once unwatched

    def _changed_since(self, version: int) -> bool:
        return self.version != version

    def wait_terminal(self, timeout: float | None) -> tuple[bool, JobInfo]:
        """Wait until the job is final; return whether it is and the info at that moment."""
        with self.lock:
            done = self.state.terminal or self._wait(lambda: self.state.terminal, timeout)
            return done, self.snapshot()

    def wait_cancel(self, timeout: float | None) -> bool:
        """Wait until a cancel is requested or the timeout passes; return whether one was."""
        with self.lock:
            return self.cancel_requested or self._wait(lambda: self.cancel_requested, timeout)

    def watch(self, interval: float) -> Iterator[JobInfo]:
        """Yield the info on every change, at most one per `interval`, ending with the final one."""
        seen = -1
        not_before = 0.0
        while True:
            with self.lock:
                if self.version == seen:
                    self._wait(functools.partial(self._changed_since, seen), None, watching=True)
                delay = not_before - _monotonic()
                if delay > 0 and not self.state.terminal:
                    self._wait(lambda: self.state.terminal, delay)
                seen = self.version
                info = self.snapshot()
            yield info
            if info.state.terminal:
                return
            not_before = _monotonic() + interval

    # -- changing state --------------------------------------------------------------------

    def begin(self) -> bool:
        """Move a queued job to RUNNING; return False if it was cancelled meanwhile."""
        with self.lock:
            if self.state is not JobState.QUEUED or self.cancel_requested:
                # A cancel requested while queued is being turned into CANCELLED by the
                # cancelling thread (request_cancel -> end); the worker must not run.
                return False
            self.state = JobState.RUNNING
            self.started_at = _monotonic()
            self.changed(wake_all=True)
        log_transition(self, "running")
        return True

    def request_cancel(self, *, queued_only: bool = False) -> None:
        """Cancel a queued job at once, or ask a running one to stop (calling `on_cancel` once).

        With `queued_only`, a job that is already running is left alone.
        """
        hook: CancelHook | None = None
        with self.lock:
            state = self.state
            if state.terminal or self.cancel_requested:
                return
            if queued_only and state is not JobState.QUEUED:
                return
            self.cancel_requested = True
            if state is not JobState.QUEUED:
                hook = self.on_cancel
                self.changed(wake_all=True)
        if state is JobState.QUEUED:
            self.end(JobState.CANCELLED, None, None, from_queue=True)
            return
        log_transition(self, "cancel requested")
        if hook is not None:
            try:
                hook()
            except Exception:
                log.exception("on_cancel hook of job %s raised", self.id)

    def end(
        self,
        state: JobState,
        result: object,
        error: VirtError | None,
        *,
        from_queue: bool = False,
    ) -> None:
        """Make the job final, log it, then run the driver's hook and the done callbacks.

        Raises `InternalError` if the job is already final (a worker finishing twice).
        """
        with self.lock:
            if self.state.terminal:
                raise InternalError(
                    f"job {self.id} ({self.kind} of {self.subject}) is already {self.state};"
                    f" a worker may finish its job only once"
                )
            if not from_queue and self.state is JobState.QUEUED:
                raise InternalError(f"job {self.id} cannot finish before it starts")
            self.state = state
            self.ended_at = _monotonic()
            if state is JobState.SUCCEEDED:
                self.percent = 100.0
                self.result = result
            elif state is JobState.FAILED:
                self.error = error
            self.worker = None
            self.on_cancel = None
            callbacks, self.callbacks = self.callbacks, None
            on_end, self.on_end = self.on_end, None
            self.settler = threading.get_ident()
            self.changed(wake_all=True)
        log_transition(self, "cancelled while queued" if from_queue else state.value, final=True)
        try:
            if on_end is not None:
                on_end(self)
            for callback in callbacks or ():
                try:
                    callback()
                except Exception:
                    log.exception("done callback of job %s raised", self.id)
        finally:
            with self.lock:
                self.settled = True
                if self._waiting:
                    assert self.cond is not None
                    self.cond.notify_all()
                else:
                    self.cond = None  # a finished job keeps no Condition (~1 KB) once unwatched

    def wait_settled(self) -> None:
        """Wait until a final job's done callbacks have run (unless this thread runs them)."""
        with self.lock:
            if self.state.terminal and not self.settled and self.settler != threading.get_ident():
                self._wait(lambda: self.settled, None)

    def add_done_callback(self, fn: Callable[[], None]) -> None:
        """Call `fn()` when the job ends; at once, in this thread, if it already has."""
        with self.lock:
            if self.callbacks is not None:
                self.callbacks.append(fn)
                return
        fn()
