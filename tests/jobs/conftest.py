"""Fixtures and controllable workers for the job-engine tests.

Nothing here sleeps to synchronise: workers block on events or queues that the test drives,
and every blocking call has a generous safety timeout (`SAFETY`) so a bug fails a test
instead of hanging it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar, cast

import pytest

from virtjob.errors import OperationFailedError
from virtjob.jobs import Job, JobContext, JobKind, LocalJobDriver

SAFETY = 5.0
"""Seconds after which a blocked test gives up (a bound, never a synchronisation delay)."""

THREAD_PREFIX = "virtjob-jobs-"

T = TypeVar("T")
Cleanup = Callable[[], None]


def job_threads() -> set[threading.Thread]:
    """Return the live threads that belong to some `LocalJobDriver`."""
    return {t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)}


class Blocker:
    """A worker that initializes, reports 10 %, then blocks until released.

    If `honour_cancel`, a cancel wakes it (through `on_cancel`, which the test passes to
    `start_job`) and it ends the job as CANCELLED; otherwise it ignores the cancel and waits
    for `release()`. Once released it reports 60 % and returns `result` (or raises `error`).
    """

    def __init__(
        self,
        *,
        honour_cancel: bool = True,
        result: object = None,
        error: BaseException | None = None,
        bounded: bool = True,
    ) -> None:
        self.honour_cancel = honour_cancel
        self.result = result
        self.error = error
        self.bounded = bounded
        self.started = threading.Event()
        self.finished = threading.Event()
        self.thread_name = ""
        self.cancel_threads: list[int] = []
        self._released = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()

    def release(self) -> None:
        """Let the worker go on to its end."""
        self._released.set()
        self._wake.set()

    def on_cancel(self) -> None:
        """The job's cancel hook: records the calling thread and wakes the worker."""
        with self._lock:
            self.cancel_threads.append(threading.get_ident())
        self._wake.set()

    def __call__(self, ctx: JobContext) -> object:
        self.thread_name = threading.current_thread().name
        try:
            ctx.initialize(bounded=self.bounded)
            ctx.update(percent=10)
            self.started.set()
            self._wake.wait(SAFETY)
            if self.honour_cancel and ctx.finish_cancel():
                return None
            if not self._released.wait(SAFETY):
                raise OperationFailedError("the test never released this worker")
            ctx.update(percent=60)
            if self.error is not None:
                raise self.error
            return self.result
        finally:
            self.finished.set()


_Call = Callable[[JobContext], object]


class Remote:
    """A worker the test drives step by step from its own thread.

    `do(fn)` runs `fn(ctx)` in the worker's thread and returns its value (or raises what it
    raised); `finish(...)` makes the worker return (or raise). Every step is acknowledged
    before `do` returns, so the test knows exactly what the worker has reported.
    """

    def __init__(self) -> None:
        self._calls: queue.Queue[_Call | None] = queue.Queue()
        self._replies: queue.Queue[tuple[object, BaseException | None]] = queue.Queue()
        self.started = threading.Event()
        self.thread_name = ""
        self._returns: object = None
        self._raises: BaseException | None = None

    def __call__(self, ctx: JobContext) -> object:
        self.thread_name = threading.current_thread().name
        self.started.set()
        while True:
            try:
                call = self._calls.get(timeout=SAFETY)
            except queue.Empty:
                raise OperationFailedError("the test never told this worker to return") from None
            if call is None:
                break
            try:
                value = call(ctx)
            except BaseException as exc:
                self._replies.put((None, exc))
            else:
                self._replies.put((value, None))
        if self._raises is not None:
            raise self._raises
        return self._returns

    def do(self, fn: Callable[[JobContext], T]) -> T:
        """Run `fn(ctx)` in the worker's thread and return its value or raise its exception."""
        self._calls.put(fn)
        value, exc = self._replies.get(timeout=SAFETY)
        if exc is not None:
            raise exc
        return cast(T, value)

    def finish(self, returns: object = None, raises: BaseException | None = None) -> None:
        """Make the worker return `returns` (or raise `raises`)."""
        self._returns = returns
        self._raises = raises
        self._calls.put(None)


def in_background(fn: Callable[[], T]) -> Future[T]:
    """Run `fn()` in a daemon thread and return its future.

    Unlike an executor's thread, a daemon thread stuck on an engine bug does not hang the
    test run: the test fails on `future.result(SAFETY)` and moves on.
    """
    future: Future[T] = Future()

    def run() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name="test-background", daemon=True).start()
    return future


def counting_down_from(eta: float) -> object:
    """Matches a reported `remaining` for a worker ETA of `eta`: it counts down from it.

    The engine subtracts the time since the worker's report; a second is a generous bound.
    """
    return pytest.approx(eta - 0.5, abs=0.5)


def start(
    driver: LocalJobDriver,
    worker: Blocker | Remote | Callable[[JobContext], object],
    *,
    kind: JobKind = JobKind.DOMAIN_SAVE,
    subject: str = "test",
    lock_key: str | None = None,
) -> Job:
    """Start `worker` on `driver`, passing a `Blocker`'s cancel hook along."""
    on_cancel = worker.on_cancel if isinstance(worker, Blocker) else None
    return driver.start_job(kind, subject, worker, on_cancel, lock_key=lock_key)


@pytest.fixture
def cleanups() -> list[Cleanup]:
    """Callables run before the test's drivers are closed (they release blocked workers)."""
    return []


@pytest.fixture
def make_blocker(cleanups: list[Cleanup]) -> Callable[..., Blocker]:
    """Return a factory of `Blocker` workers, all released at teardown."""

    def make(**kwargs: Any) -> Blocker:
        blocker = Blocker(**kwargs)
        cleanups.append(blocker.release)
        return blocker

    return make


@pytest.fixture
def make_remote(cleanups: list[Cleanup]) -> Callable[[], Remote]:
    """Return a factory of `Remote` workers, all told to return at teardown."""

    def make() -> Remote:
        remote = Remote()
        cleanups.append(remote.finish)
        return remote

    return make


@pytest.fixture
def make_driver(cleanups: list[Cleanup]) -> Iterator[Callable[..., LocalJobDriver]]:
    """Return a factory of `LocalJobDriver`s; each is closed at teardown, and must close.

    Teardown also checks that no job thread outlives its driver.
    """
    before = job_threads()
    drivers: list[LocalJobDriver] = []

    def make(max_jobs: int = 4, **kwargs: Any) -> LocalJobDriver:
        driver = LocalJobDriver(max_jobs, **kwargs)
        drivers.append(driver)
        return driver

    yield make
    for cleanup in cleanups:
        cleanup()
    for driver in drivers:
        assert driver.close(timeout=SAFETY), f"{driver!r} did not close within {SAFETY} s"
    leaked = job_threads() - before
    assert not leaked, f"job threads left after close: {sorted(t.name for t in leaked)}"


@pytest.fixture
def driver(make_driver: Callable[..., LocalJobDriver]) -> LocalJobDriver:
    """A `LocalJobDriver` with four worker threads, closed at teardown."""
    return make_driver(4)
