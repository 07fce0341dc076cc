"""The `Job` handle: every row of DESIGN.md section 3, on a `LocalJobDriver`."""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.jobs.conftest import SAFETY, Blocker, Remote, counting_down_from, in_background, start
from virtjob.errors import (
    InternalError,
    InvalidArgError,
    JobCancelledError,
    JobTimeoutError,
    NoJobError,
    OperationFailedError,
    OperationInvalidError,
    VirtError,
)
from virtjob.jobs import Job, JobContext, JobInfo, JobKind, JobState, LocalJobDriver

MakeBlocker = Callable[..., Blocker]
MakeRemote = Callable[[], Remote]
MakeDriver = Callable[..., LocalJobDriver]

_ORDER = {JobState.QUEUED: 0, JobState.RUNNING: 1}


def _update(ctx: JobContext, percent: float, remaining: float | None = None) -> None:
    ctx.update(percent=percent, remaining=remaining)


def _rank(state: JobState) -> int:
    return _ORDER.get(state, 2)


def _occupied_driver(make_driver: MakeDriver, make_blocker: MakeBlocker) -> LocalJobDriver:
    """A one-thread driver whose thread is busy with a blocker, so new jobs stay queued."""
    driver = make_driver(1)
    blocker = make_blocker()
    start(driver, blocker, subject="occupier")
    assert blocker.started.wait(SAFETY)
    return driver


# -- identity --------------------------------------------------------------------------------


def test_id_kind_and_subject_are_stable_and_ids_unique(driver: LocalJobDriver) -> None:
    """A job keeps its string id, kind and subject; ids differ between jobs."""
    jobs = [
        driver.start_job(JobKind.NETWORK_CREATE, f"net{i}", lambda ctx: None) for i in range(50)
    ]
    assert len({job.id for job in jobs}) == 50
    for i, job in enumerate(jobs):
        job.wait(SAFETY)
        assert isinstance(job.id, str)
        assert job.id
        assert job.kind is JobKind.NETWORK_CREATE
        assert job.subject == f"net{i}"
        same = driver.lookup_job(job.id)
        assert (same.id, same.kind, same.subject) == (job.id, job.kind, job.subject)
        assert job.id in repr(job)


# -- info ------------------------------------------------------------------------------------


def test_queued_job_reports_zero_elapsed_and_nothing_known(
    make_driver: MakeDriver, make_blocker: MakeBlocker
) -> None:
    """While queued: state QUEUED, elapsed 0, unbounded, percent and remaining None."""
    driver = _occupied_driver(make_driver, make_blocker)
    job = driver.start_job(JobKind.DOMAIN_SAVE, "waiting", lambda ctx: None)
    info = job.info()
    assert info == JobInfo(JobState.QUEUED, False, 0.0, None, None, None, None, False)
    assert job.info().elapsed == 0.0


def test_elapsed_rises_while_running_and_is_frozen_at_the_end(
    driver: LocalJobDriver, make_remote: MakeRemote
) -> None:
    """elapsed never decreases while running, and the final value never changes afterwards."""
    remote = make_remote()
    job = start(driver, remote)
    samples = []
    for _ in range(20):
        remote.do(lambda ctx: None)
        samples.append(job.info().elapsed)
    assert all(e >= 0 for e in samples)
    assert samples == sorted(samples)
    remote.finish()
    final = job.wait(SAFETY).elapsed
    assert final >= samples[-1]
    other = driver.start_job(JobKind.DOMAIN_SAVE, "other", lambda ctx: None)
    other.wait(SAFETY)  # let some time pass without sleeping
    assert job.info().elapsed == final
    assert job.wait(SAFETY).elapsed == final


def test_remaining_is_zero_once_terminal(driver: LocalJobDriver, make_remote: MakeRemote) -> None:
    """A finished job reports remaining 0, whatever the worker estimated."""
    remote = make_remote()
    job = start(driver, remote)
    remote.do(lambda ctx: ctx.initialize(eta=100.0))
    assert job.info().remaining == counting_down_from(100.0)
    remote.finish()
    assert job.wait(SAFETY).remaining == 0.0


def test_percent_never_decreases_and_is_100_on_success(
    driver: LocalJobDriver, make_remote: MakeRemote
) -> None:
    """Lower percents reported later are ignored; success sets 100."""
    remote = make_remote()
    job = start(driver, remote)
    remote.do(lambda ctx: ctx.initialize())
    seen = [job.info().percent]
    for step in (30.0, 10.0, 30.0, 55.5, 0.0, 54.0, 80.0):
        remote.do(functools.partial(_update, percent=step))
        seen.append(job.info().percent)
    assert seen == [0.0, 30.0, 30.0, 30.0, 55.5, 55.5, 55.5, 80.0]
    remote.finish()
    assert job.wait(SAFETY).percent == 100.0


def test_unbounded_job_reports_no_percent_until_it_succeeds(
    driver: LocalJobDriver, make_remote: MakeRemote
) -> None:
    """An unbounded job has percent None while running and 100 once it succeeds."""
    remote = make_remote()
    job = start(driver, remote)
    remote.do(lambda ctx: ctx.initialize(bounded=False))
    remote.do(lambda ctx: ctx.update(percent=40))
    info = job.info()
    assert (info.bounded, info.percent) == (False, None)
    remote.finish()
    info = job.wait(SAFETY)
    assert (info.state, info.percent) == (JobState.SUCCEEDED, 100.0)


# -- cancel ----------------------------------------------------------------------------------


def test_cancel_of_queued_job_is_immediate_and_its_worker_never_runs(
    make_driver: MakeDriver, make_blocker: MakeBlocker
) -> None:
    """cancel() on a queued job returns with the job CANCELLED; its worker is never called."""
    driver = make_driver(1)
    occupier = make_blocker()
    start(driver, occupier)
    assert occupier.started.wait(SAFETY)
    ran = threading.Event()
    hooked = threading.Event()

    def worker(ctx: JobContext) -> None:
        ran.set()

    job = driver.start_job(JobKind.DOMAIN_START, "dom", worker, hooked.set)
    job.cancel()
    info = job.info()
    assert info.state is JobState.CANCELLED
    assert info.cancel_requested
    assert (info.elapsed, info.remaining) == (0.0, 0.0)
    occupier.release()
    assert driver.close(timeout=SAFETY)  # every thread has drained the queue
    assert not ran.is_set()
    assert not hooked.is_set()  # nothing to interrupt: the hook is for running jobs
    with pytest.raises(JobCancelledError, match=job.id):
        job.result(SAFETY)


def test_cancel_returns_at_once_and_a_cooperative_job_ends_within_a_second(
    driver: LocalJobDriver, make_blocker: MakeBlocker
) -> None:
    """A running job that honours cancels reaches CANCELLED well within 1 s of the request."""
    blocker = make_blocker(honour_cancel=True)
    job = start(driver, blocker)
    assert blocker.started.wait(SAFETY)
    job.cancel()
    info = job.wait(timeout=1.0)
    assert info.state is JobState.CANCELLED
    assert info.cancel_requested
    assert job.error() is None
    with pytest.raises(JobCancelledError):
        job.result()


def test_running_job_may_ignore_cancel_and_succeed(
    driver: LocalJobDriver, make_blocker: MakeBlocker
) -> None:
    """A cancel only asks; a worker that finishes anyway makes the job SUCCEEDED."""
    blocker = make_blocker(honour_cancel=False, result="saved")
    job = start(driver, blocker)
    assert blocker.started.wait(SAFETY)
    job.cancel()
    info = job.info()
    assert (info.state, info.cancel_requested) == (JobState.RUNNING, True)
    blocker.release()
    assert job.result(SAFETY) == "saved"
    info = job.info()
    assert (info.state, info.cancel_requested, info.percent) == (JobState.SUCCEEDED, True, 100.0)


def test_cancel_of_finished_job_is_a_no_op(driver: LocalJobDriver) -> None:
    """Cancelling a finished job changes nothing and calls no hook."""
    hooked = threading.Event()
    job = driver.start_job(JobKind.DOMAIN_SAVE, "d", lambda ctx: 7, hooked.set)
    before = job.wait(SAFETY)
    job.cancel()
    assert job.info() == before
    assert not before.cancel_requested
    assert job.result() == 7
    assert not hooked.is_set()


def test_on_cancel_runs_exactly_once_in_the_cancelling_thread(
    driver: LocalJobDriver, make_blocker: MakeBlocker
) -> None:
    """Concurrent cancels from many threads call on_cancel once, from one of those threads."""
    blocker = make_blocker(honour_cancel=False)
    job = start(driver, blocker)
    assert blocker.started.wait(SAFETY)
    barrier = threading.Barrier(8)
    cancellers: set[int] = set()
    lock = threading.Lock()

    def cancel() -> None:
        with lock:
            cancellers.add(threading.get_ident())
        barrier.wait(SAFETY)
        job.cancel()

    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(cancel) for _ in range(8)]:
            future.result(SAFETY)
    job.cancel()
    assert len(blocker.cancel_threads) == 1
    assert blocker.cancel_threads[0] in cancellers
    blocker.release()
    job.wait(SAFETY)
    job.cancel()
    assert len(blocker.cancel_threads) == 1


def test_on_cancel_exception_is_logged_not_raised(
    driver: LocalJobDriver, make_blocker: MakeBlocker, caplog: pytest.LogCaptureFixture
) -> None:
    """A cancel hook that raises does not break cancel(); the error is logged."""
    blocker = make_blocker(honour_cancel=False)

    def hook() -> None:
        raise RuntimeError("hook exploded")

    job = driver.start_job(JobKind.DOMAIN_SAVE, "d", blocker, hook)
    assert blocker.started.wait(SAFETY)
    with caplog.at_level(logging.ERROR, logger="virtjob.jobs"):
        job.cancel()
    assert "hook exploded" in caplog.text
    blocker.release()
    assert job.wait(SAFETY).state is JobState.SUCCEEDED


# -- wait and result -------------------------------------------------------------------------


def test_wait_timeout_raises_timeout_error_and_the_job_goes_on(
    driver: LocalJobDriver, make_blocker: MakeBlocker
) -> None:
    """wait(timeout) raises JobTimeoutError, a TimeoutError and a VirtError; the job continues."""
    blocker = make_blocker(result=1)
    job = start(driver, blocker)
    assert blocker.started.wait(SAFETY)
    with pytest.raises(TimeoutError) as caught:
        job.wait(timeout=0.01)
    assert isinstance(caught.value, JobTimeoutError)
    assert isinstance(caught.value, VirtError)
    assert job.id in str(caught.value)
    with pytest.raises(JobTimeoutError):
        job.result(timeout=0)
    assert job.info().state is JobState.RUNNING
    blocker.release()
    assert job.result(SAFETY) == 1


def test_wait_returns_the_final_info_without_raising_the_jobs_error(
    driver: LocalJobDriver,
) -> None:
    """wait() on a failed job returns its terminal info; only result() raises."""
    error = OperationFailedError("disk full")

    def worker(ctx: JobContext) -> None:
        raise error

    job = driver.start_job(JobKind.DOMAIN_SAVE, "d", worker)
    info = job.wait(SAFETY)
    assert info.state is JobState.FAILED
    assert info.remaining == 0.0
    assert info == job.info()


def test_result_returns_the_workers_value(driver: LocalJobDriver) -> None:
    """result() of a succeeded job is what the worker returned."""
    value = object()
    job = driver.start_job(JobKind.DOMAIN_SAVE, "d", lambda ctx: value)
    assert job.result(SAFETY) is value
    assert job.result() is value


def test_result_raises_the_jobs_own_virt_error(driver: LocalJobDriver) -> None:
    """result() re-raises the very VirtError the worker raised; error() returns it."""
    error = OperationFailedError("disk full on /var")

    def worker(ctx: JobContext) -> None:
        raise error

    job = driver.start_job(JobKind.DOMAIN_SAVE, "d", worker)
    with pytest.raises(OperationFailedError) as caught:
        job.result(SAFETY)
    assert caught.value is error
    assert job.error() is error


def test_worker_raising_any_exception_fails_with_internal_error_and_logs_traceback(
    driver: LocalJobDriver, caplog: pytest.LogCaptureFixture
) -> None:
    """A non-VirtError from a worker becomes an InternalError; the traceback is logged."""
    boom = ZeroDivisionError("division by zero in the worker")

    def worker(ctx: JobContext) -> None:
        raise boom

    with caplog.at_level(logging.ERROR, logger="virtjob.jobs"):
        job = driver.start_job(JobKind.DOMAIN_DUMP_CORE, "d", worker)
        info = job.wait(SAFETY)
    assert info.state is JobState.FAILED
    error = job.error()
    assert isinstance(error, InternalError)
    assert error.__cause__ is boom
    assert job.id in error.message
    assert "ZeroDivisionError" in error.message
    with pytest.raises(InternalError):
        job.result()
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[1] is boom]
    assert len(logged) == 1
    assert logged[0].levelno == logging.ERROR
    assert job.id in logged[0].getMessage()
    assert "Traceback" in caplog.text
    assert "raise boom" in caplog.text


def test_worker_raising_base_exception_still_fails_the_job(driver: LocalJobDriver) -> None:
    """Even a BaseException (e.g. SystemExit) from a worker ends the job as FAILED."""

    def worker(ctx: JobContext) -> None:
        raise SystemExit(3)

    job = driver.start_job(JobKind.DOMAIN_SAVE, "d", worker)
    assert job.wait(SAFETY).state is JobState.FAILED
    assert isinstance(job.error(), InternalError)


# -- error, result adapters ------------------------------------------------------------------


def test_error_is_none_unless_failed(driver: LocalJobDriver, make_blocker: MakeBlocker) -> None:
    """error() is None while running, after success and after a cancel."""
    blocker = make_blocker()
    running = start(driver, blocker)
    assert blocker.started.wait(SAFETY)
    assert running.error() is None
    running.cancel()
    running.wait(SAFETY)
    assert running.error() is None
    done = driver.start_job(JobKind.DOMAIN_SAVE, "d", lambda ctx: 1)
    done.wait(SAFETY)
    assert done.error() is None


def test_result_adapter_applies_to_result(driver: LocalJobDriver) -> None:
    """A handle made with with_result_adapter passes results through the adapter; the
    original handle, equal to it, still gives the worker's value."""
    job = driver.start_job(JobKind.DOMAIN_RESTORE, "d", lambda ctx: "raw")
    adapted = job.with_result_adapter(lambda value: ("wrapped", value))
    assert adapted == job
    assert adapted.result(SAFETY) == ("wrapped", "raw")
    assert job.result() == "raw"


def test_result_adapter_is_not_asked_for_a_failure_or_a_cancel(
    driver: LocalJobDriver, make_blocker: MakeBlocker
) -> None:
    """A failed or cancelled job raises its own error; the adapter never sees it."""
    seen: list[object] = []

    def adapt(value: object) -> object:
        seen.append(value)
        return value

    def fail(ctx: JobContext) -> None:
        raise OperationFailedError("no")

    failed = driver.start_job(JobKind.DOMAIN_CREATE, "y", fail).with_result_adapter(adapt)
    with pytest.raises(OperationFailedError, match="no"):
        failed.result(SAFETY)
    blocker = make_blocker()
    cancelled = start(driver, blocker).with_result_adapter(adapt)
    assert blocker.started.wait(SAFETY)
    cancelled.cancel()
    with pytest.raises(JobCancelledError):
        cancelled.result(SAFETY)
    assert seen == []


# -- watch -----------------------------------------------------------------------------------


def test_watch_yields_a_rising_series_ending_with_the_terminal_info(
    driver: LocalJobDriver, make_remote: MakeRemote
) -> None:
    """watch(): states move forward, percent and elapsed never fall, last info is the final."""
    remote = make_remote()
    job = start(driver, remote)
    watched = in_background(lambda: list(job.watch(interval=0)))
    remote.do(lambda ctx: ctx.initialize(eta=9.0))
    for p in (5.0, 20.0, 10.0, 20.0, 45.0, 90.0):
        remote.do(functools.partial(_update, percent=p, remaining=(100 - p) / 10))
    remote.finish("ok")
    infos = watched.result(SAFETY)
    assert infos
    assert infos[-1].state is JobState.SUCCEEDED
    assert infos[-1] == job.info()
    assert all(not info.state.terminal for info in infos[:-1])
    ranks = [_rank(info.state) for info in infos]
    assert ranks == sorted(ranks)
    elapsed = [info.elapsed for info in infos]
    assert elapsed == sorted(elapsed)
    percents = [info.percent for info in infos]
    known = [p for p in percents if p is not None]
    assert known == sorted(known)
    assert percents[-1] == 100.0
    if None in percents:  # only before initialize(): never after a percent was reported
        assert percents.index(known[0]) > max(i for i, p in enumerate(percents) if p is None)


def test_watch_of_a_finished_job_yields_just_the_final_info(driver: LocalJobDriver) -> None:
    """watch() on a finished job yields its terminal info once and stops."""
    job = driver.start_job(JobKind.DOMAIN_SAVE, "d", lambda ctx: None)
    final = job.wait(SAFETY)
    assert list(job.watch()) == [final]


def test_watch_coalesces_changes_to_one_per_interval(
    driver: LocalJobDriver,
) -> None:
    """Consecutive non-final infos from watch(interval) are at least `interval` apart."""
    interval = 0.05
    stop = threading.Event()

    def worker(ctx: JobContext) -> None:
        ctx.initialize()
        while not stop.is_set():  # a storm of tiny updates
            ctx.update_rel(percent=0.0001)

    job = driver.start_job(JobKind.DOMAIN_SAVE, "d", worker)
    received: list[tuple[float, JobInfo]] = []
    for info in job.watch(interval=interval):
        received.append((time.monotonic(), info))
        if len(received) == 6:
            stop.set()
    assert received[-1][1].state is JobState.SUCCEEDED
    assert len(received) >= 6
    for (before, _), (after, info) in itertools.pairwise(received):
        if not info.state.terminal:
            assert after - before >= interval - 1e-6
    percents = [info.percent or 0.0 for _, info in received]
    assert percents == sorted(percents)


def test_watch_delivers_the_final_info_without_waiting_for_the_interval(
    driver: LocalJobDriver, make_remote: MakeRemote
) -> None:
    """With a long interval, the terminal info still comes as soon as the job ends."""
    remote = make_remote()
    job = start(driver, remote)
    remote.do(lambda ctx: ctx.initialize())
    watching = job.watch(interval=3600.0)
    first = next(watching)
    assert not first.state.terminal
    rest = in_background(lambda: list(watching))
    remote.do(lambda ctx: ctx.update(percent=50))
    remote.finish()
    infos = rest.result(SAFETY)  # an hour-long interval would blow this safety bound
    # the mid-way update falls inside the interval: coalesced into the final info
    assert infos == [job.info()]
    assert infos[0].state is JobState.SUCCEEDED


@pytest.mark.parametrize("interval", [-0.1, -1, float("nan")])
def test_watch_with_a_negative_interval_raises_invalid_arg(
    driver: LocalJobDriver, interval: float
) -> None:
    """A negative (or NaN) watch interval is refused with InvalidArgError."""
    job = driver.start_job(JobKind.DOMAIN_SAVE, "d", lambda ctx: None)
    with pytest.raises(InvalidArgError, match="interval"):
        job.watch(interval)
    job.wait(SAFETY)


# -- done callbacks --------------------------------------------------------------------------


def test_done_callback_runs_once_when_the_job_ends(
    driver: LocalJobDriver, make_blocker: MakeBlocker
) -> None:
    """A callback added before the end is called once, with the job, after it is terminal."""
    blocker = make_blocker(result=5)
    job = start(driver, blocker)
    calls: list[tuple[Job, JobState]] = []
    called = threading.Event()

    def callback(j: Job) -> None:
        calls.append((j, j.info().state))
        called.set()

    job.add_done_callback(callback)
    assert blocker.started.wait(SAFETY)
    assert calls == []
    blocker.release()
    assert called.wait(SAFETY)
    assert driver.close(timeout=SAFETY)  # the worker thread is gone: no late second call
    assert calls == [(job, JobState.SUCCEEDED)]


def test_done_callback_on_a_finished_job_runs_at_once_in_the_callers_thread(
    driver: LocalJobDriver,
) -> None:
    """On a finished job, add_done_callback calls fn before returning, in the same thread."""
    job = driver.start_job(JobKind.DOMAIN_SAVE, "d", lambda ctx: None)
    job.wait(SAFETY)
    threads: list[int] = []
    job.add_done_callback(lambda j: threads.append(threading.get_ident()))
    assert threads == [threading.get_ident()]


def test_done_callback_of_a_job_cancelled_while_queued(
    make_driver: MakeDriver, make_blocker: MakeBlocker
) -> None:
    """Cancelling a queued job runs its callbacks once, in the cancelling thread."""
    driver = _occupied_driver(make_driver, make_blocker)
    job = driver.start_job(JobKind.DOMAIN_SAVE, "d", lambda ctx: None)
    threads: list[int] = []
    job.add_done_callback(lambda j: threads.append(threading.get_ident()))
    job.cancel()
    assert threads == [threading.get_ident()]
    job.cancel()
    assert threads == [threading.get_ident()]


def test_a_raising_done_callback_is_logged_and_others_still_run(
    driver: LocalJobDriver, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in one callback is logged; it stops neither the job nor other callbacks."""
    job = driver.start_job(JobKind.DOMAIN_SAVE, "d", lambda ctx: None)
    job.wait(SAFETY)
    seen: list[str] = []

    def bad(j: Job) -> None:
        raise RuntimeError("callback exploded")

    with caplog.at_level(logging.ERROR, logger="virtjob.jobs"):
        job.add_done_callback(bad)
        job.add_done_callback(lambda j: seen.append(j.id))
    assert seen == [job.id]
    assert "callback exploded" in caplog.text


# -- destroy ---------------------------------------------------------------------------------


def test_destroy_of_a_running_or_queued_job_raises_operation_invalid(
    make_driver: MakeDriver, make_blocker: MakeBlocker
) -> None:
    """destroy() refuses a job that is not terminal, naming it; the job stays usable."""
    driver = make_driver(1)
    blocker = make_blocker()
    running = start(driver, blocker)
    assert blocker.started.wait(SAFETY)
    queued = driver.start_job(JobKind.DOMAIN_SAVE, "q", lambda ctx: None)
    for job in (running, queued):
        with pytest.raises(OperationInvalidError, match=job.id):
            job.destroy()
        assert not job.info().state.terminal
    blocker.release()
    running.wait(SAFETY)
    queued.wait(SAFETY)
    running.destroy()
    queued.destroy()


_CALLS: dict[str, Callable[[Job], Any]] = {
    "info": lambda job: job.info(),
    "cancel": lambda job: job.cancel(),
    "wait": lambda job: job.wait(),
    "wait-timeout": lambda job: job.wait(timeout=0),
    "result": lambda job: job.result(),
    "error": lambda job: job.error(),
    "watch": lambda job: job.watch(),
    "add_done_callback": lambda job: job.add_done_callback(lambda j: None),
    "destroy": lambda job: job.destroy(),
}


@pytest.mark.parametrize("kind", [JobKind.DOMAIN_SAVE, JobKind.DOMAIN_START])
@pytest.mark.parametrize("call", sorted(_CALLS))
def test_every_call_on_a_destroyed_job_raises_no_job(
    driver: LocalJobDriver, call: str, kind: JobKind
) -> None:
    """After destroy(), every method of the handle (and of a fresh handle) raises NoJobError."""
    job = driver.start_job(kind, "d", lambda ctx: "r")
    job.wait(SAFETY)
    job.destroy()
    with pytest.raises(NoJobError, match=job.id):
        _CALLS[call](job)
    with pytest.raises(NoJobError):
        driver.lookup_job(job.id)
    assert job not in driver.list_jobs()


# -- with ------------------------------------------------------------------------------------


def test_with_block_waits_for_the_job_and_destroys_it(
    driver: LocalJobDriver, make_blocker: MakeBlocker
) -> None:
    """Leaving `with job:` normally waits for the job to end, then destroys it."""
    blocker = make_blocker(result=3)
    with start(driver, blocker) as job:
        assert blocker.started.wait(SAFETY)
        blocker.release()
    assert blocker.finished.is_set()
    assert blocker.cancel_threads == []
    with pytest.raises(NoJobError):
        job.info()


def test_with_block_that_raises_cancels_waits_and_destroys(
    driver: LocalJobDriver, make_blocker: MakeBlocker
) -> None:
    """When the block raises, the job is cancelled, waited for and destroyed; the error flows."""
    blocker = make_blocker(honour_cancel=True)
    states: list[JobState] = []
    job = start(driver, blocker)

    def use_then_fail() -> None:
        with job:
            job.add_done_callback(lambda j: states.append(j.info().state))
            assert blocker.started.wait(SAFETY)
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        use_then_fail()
    assert states == [JobState.CANCELLED]
    assert len(blocker.cancel_threads) == 1
    with pytest.raises(NoJobError):
        job.info()


def test_with_block_does_not_raise_the_jobs_error(driver: LocalJobDriver) -> None:
    """Leaving `with` after a failed job destroys it without raising the job's error."""

    def worker(ctx: JobContext) -> None:
        raise OperationFailedError("nope")

    with driver.start_job(JobKind.DOMAIN_SAVE, "d", worker) as job:
        pass
    with pytest.raises(NoJobError):
        job.error()


def test_with_block_tolerates_a_job_destroyed_inside_it(driver: LocalJobDriver) -> None:
    """Destroying the job inside the block is fine: the exit has nothing left to do."""
    with driver.start_job(JobKind.DOMAIN_SAVE, "d", lambda ctx: None) as job:
        job.wait(SAFETY)
        job.destroy()
    with pytest.raises(NoJobError):
        job.info()


def test_destroy_waits_for_the_done_callbacks(driver: LocalJobDriver) -> None:
    """`with job:` and destroy() do not pull the record from under a running done callback."""
    in_callback = threading.Event()
    release = threading.Event()
    results: list[object] = []

    def callback(job: Job) -> None:
        in_callback.set()
        release.wait(SAFETY)
        results.append(job.result())

    job = start(driver, lambda ctx: 7)
    job.add_done_callback(callback)
    assert in_callback.wait(SAFETY)
    destroyer = in_background(job.destroy)
    with pytest.raises(TimeoutError):
        destroyer.result(timeout=0.2)  # blocked while the callback runs
    release.set()
    destroyer.result(SAFETY)
    assert results == [7]
    with pytest.raises(NoJobError):
        job.info()


def test_a_done_callback_may_destroy_its_own_job(driver: LocalJobDriver) -> None:
    """Destroying the job from inside its own done callback does not deadlock."""
    destroyed = threading.Event()

    def callback(job: Job) -> None:
        job.destroy()
        destroyed.set()

    job = start(driver, lambda ctx: None)
    job.add_done_callback(callback)
    assert destroyed.wait(SAFETY)
    with pytest.raises(NoJobError):
        job.info()


def test_a_callback_raising_system_exit_does_not_kill_the_pool(
    make_driver: Callable[..., LocalJobDriver],
) -> None:
    """With one thread, a callback raising SystemExit must not leave later jobs queued forever."""
    driver = make_driver(max_jobs=1)

    def leave(job: Job) -> None:
        raise SystemExit(3)

    registered = threading.Event()
    first = start(driver, lambda ctx: registered.wait(SAFETY))
    first.add_done_callback(leave)
    registered.set()
    first.wait(SAFETY)
    assert start(driver, lambda ctx: 5).result(SAFETY) == 5


@pytest.mark.parametrize("bad", ["1", -1, -0.5, float("nan"), float("inf"), True, object()])
def test_wait_and_result_refuse_a_timeout_that_is_not_seconds(
    driver: LocalJobDriver, bad: object
) -> None:
    """A timeout must be None or a finite number >= 0: anything else is InvalidArgError."""
    release = threading.Event()
    job = start(driver, lambda ctx: release.wait(SAFETY))
    for call in (job.wait, job.result):
        with pytest.raises(InvalidArgError, match="seconds"):
            call(bad)  # type: ignore[arg-type]
    release.set()
    assert job.wait(SAFETY).state is JobState.SUCCEEDED


@pytest.mark.parametrize("bad", ["0.1", -1, float("nan"), None])
def test_watch_refuses_an_interval_that_is_not_seconds(driver: LocalJobDriver, bad: object) -> None:
    """watch(interval) needs a finite number >= 0."""
    job = start(driver, lambda ctx: None)
    with pytest.raises(InvalidArgError, match="watch interval"):
        job.watch(bad)  # type: ignore[arg-type]
    job.wait(SAFETY)
