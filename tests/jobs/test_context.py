"""The worker API, `JobContext` (DESIGN.md section 4), driven step by step with `Remote`."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import pytest

from tests.jobs.conftest import SAFETY, Remote, counting_down_from, start
from virtjob.errors import InternalError, OperationFailedError
from virtjob.jobs import Job, JobContext, JobInfo, JobKind, JobState, LocalJobDriver

MakeRemote = Callable[[], Remote]


@pytest.fixture
def remote(make_remote: MakeRemote) -> Remote:
    """A worker the test drives step by step."""
    return make_remote()


@pytest.fixture
def job(driver: LocalJobDriver, remote: Remote) -> Job:
    """A running job whose worker is `remote`."""
    job = start(driver, remote, kind=JobKind.DOMAIN_SAVE, subject="vm1")
    remote.do(lambda ctx: None)  # the worker is now running
    return job


def test_context_names_its_job(job: Job, remote: Remote) -> None:
    """ctx.id, ctx.kind and ctx.subject are those of the job the worker runs."""
    assert remote.do(lambda ctx: (ctx.id, ctx.kind, ctx.subject)) == (
        job.id,
        JobKind.DOMAIN_SAVE,
        "vm1",
    )


def test_before_initialize_the_job_is_running_and_unbounded(job: Job) -> None:
    """Until initialize(), the job is RUNNING, bounded False, percent and remaining None."""
    info = job.info()
    assert info.state is JobState.RUNNING
    assert (info.bounded, info.percent, info.remaining) == (False, None, None)
    assert (info.processed, info.total, info.cancel_requested) == (None, None, False)


def test_initialize_bounded_starts_at_zero_percent(job: Job, remote: Remote) -> None:
    """initialize(bounded=True) makes the job bounded at 0 % with remaining unknown."""
    remote.do(lambda ctx: ctx.initialize())
    info = job.info()
    assert (info.bounded, info.percent, info.remaining) == (True, 0.0, None)


def test_initialize_with_eta_reports_it_as_remaining(job: Job, remote: Remote) -> None:
    """The first ETA given to initialize() is the remaining time reported."""
    remote.do(lambda ctx: ctx.initialize(eta=50.0, bounded=True))
    info = job.info()
    assert (info.bounded, info.percent, info.remaining) == (True, 0.0, counting_down_from(50.0))


def test_initialize_unbounded_ignores_percents(job: Job, remote: Remote) -> None:
    """An unbounded job keeps percent None whatever the worker reports, but shows its ETA."""
    remote.do(lambda ctx: ctx.initialize(eta=8.0, bounded=False))
    remote.do(lambda ctx: ctx.update(percent=50, remaining=4.0))
    remote.do(lambda ctx: ctx.update_rel(percent=10))
    info = job.info()
    assert (info.bounded, info.percent, info.remaining) == (False, None, counting_down_from(4.0))
    remote.finish()
    assert job.wait(SAFETY).percent == 100.0


def test_initialize_twice_raises_internal_error(job: Job, remote: Remote) -> None:
    """A second initialize() is a driver bug: InternalError, and the first one stands."""
    remote.do(lambda ctx: ctx.initialize(eta=5.0))
    with pytest.raises(InternalError, match="once"):
        remote.do(lambda ctx: ctx.initialize(bounded=False))
    assert job.info().bounded


def test_update_sets_absolute_values_and_none_keeps_them(job: Job, remote: Remote) -> None:
    """update() replaces the values it is given and leaves the others as they were."""
    remote.do(lambda ctx: ctx.initialize())
    remote.do(lambda ctx: ctx.update(remaining=30.0, percent=25.0, processed=100, total=1000))
    info = job.info()
    assert (info.remaining, info.percent, info.processed, info.total) == (
        counting_down_from(30.0),
        25.0,
        100,
        1000,
    )
    remote.do(lambda ctx: ctx.update(remaining=20.0))
    info = job.info()
    assert (info.remaining, info.percent, info.processed, info.total) == (
        counting_down_from(20.0),
        25.0,
        100,
        1000,
    )


def test_update_rel_adds_to_the_current_values(job: Job, remote: Remote) -> None:
    """update_rel() adds seconds to the ETA and points to the percent."""
    remote.do(lambda ctx: ctx.initialize(eta=50.0))
    remote.do(lambda ctx: ctx.update_rel(remaining=-1, percent=2))
    info = job.info()
    assert (info.remaining, info.percent) == (counting_down_from(49.0), 2.0)
    remote.do(lambda ctx: ctx.update_rel(remaining=-4, percent=3.5))
    info = job.info()
    assert (info.remaining, info.percent) == (counting_down_from(45.0), 5.5)
    remote.do(lambda ctx: ctx.update_rel(remaining=-100))
    assert job.info().remaining == 0.0  # an ETA never goes below zero


def test_percent_is_capped_and_never_decreases(job: Job, remote: Remote) -> None:
    """Percents are clamped to 100; lower absolute or negative relative values are ignored."""
    remote.do(lambda ctx: ctx.initialize())
    remote.do(lambda ctx: ctx.update(percent=40))
    remote.do(lambda ctx: ctx.update(percent=20))
    assert job.info().percent == 40.0
    remote.do(lambda ctx: ctx.update_rel(percent=-15))
    assert job.info().percent == 40.0
    remote.do(lambda ctx: ctx.update(processed=1, total=100))  # derived 1 % < 40 %
    assert job.info().percent == 40.0
    remote.do(lambda ctx: ctx.update_rel(percent=500))
    assert job.info().percent == 100.0
    remote.do(lambda ctx: ctx.update(percent=250))
    assert job.info().percent == 100.0


def test_percent_follows_processed_and_total(job: Job, remote: Remote) -> None:
    """With bytes reported and no percent, percent is processed / total."""
    remote.do(lambda ctx: ctx.initialize())
    remote.do(lambda ctx: ctx.update(processed=50, total=200))
    info = job.info()
    assert (info.processed, info.total, info.percent) == (50, 200, 25.0)
    remote.do(lambda ctx: ctx.update_rel(processed=50))
    info = job.info()
    assert (info.processed, info.percent) == (100, 50.0)
    remote.do(lambda ctx: ctx.update(processed=150))
    info = job.info()
    assert (info.processed, info.percent) == (150, 75.0)


def test_processed_without_total_gives_no_percent(job: Job, remote: Remote) -> None:
    """Bytes with no known total are reported, but cannot move the percent."""
    remote.do(lambda ctx: ctx.initialize())
    remote.do(lambda ctx: ctx.update_rel(processed=4096))
    info = job.info()
    assert (info.processed, info.total, info.percent) == (4096, None, 0.0)


def test_remaining_is_estimated_from_the_observed_rate(job: Job, remote: Remote) -> None:
    """With percent but no ETA, remaining is estimated from the rate since initialize()."""
    remote.do(lambda ctx: ctx.initialize())
    assert job.info().remaining is None  # no progress yet: nothing to estimate from
    remote.do(lambda ctx: ctx.update(percent=25.0))
    info = job.info()
    assert info.remaining is not None
    # 25 % took at most `elapsed` seconds, so the other 75 % take at most 3 x elapsed
    assert 0.0 <= info.remaining <= 3 * info.elapsed + 1e-9
    remote.do(lambda ctx: ctx.update(percent=50.0))
    info = job.info()
    assert info.remaining is not None
    assert 0.0 <= info.remaining <= info.elapsed + 1e-9


def test_fresh_worker_eta_wins_over_the_estimate(job: Job, remote: Remote) -> None:
    """An ETA given with the latest percent is reported as is; a stale one is re-estimated."""
    remote.do(lambda ctx: ctx.initialize())
    remote.do(lambda ctx: ctx.update(percent=50.0, remaining=42.0))
    assert job.info().remaining == counting_down_from(42.0)
    remote.do(lambda ctx: ctx.update(percent=60.0))  # new progress, no new ETA
    info = job.info()
    assert info.remaining is not None
    assert info.remaining < 41.0
    assert 0.0 <= info.remaining <= info.elapsed * 40 / 60 + 1e-9
    remote.do(lambda ctx: ctx.update_rel(remaining=-2.0))  # a fresh relative ETA
    assert job.info().remaining == counting_down_from(40.0)


def test_worker_returning_without_finish_succeeds_with_its_value(job: Job, remote: Remote) -> None:
    """A worker that just returns makes the job SUCCEEDED with the returned value."""
    remote.do(lambda ctx: ctx.initialize())
    remote.do(lambda ctx: ctx.update(percent=30))
    remote.finish(returns={"saved": True})
    assert job.result(SAFETY) == {"saved": True}
    info = job.info()
    assert (info.state, info.percent, info.remaining) == (JobState.SUCCEEDED, 100.0, 0.0)


def test_finish_success_sets_the_result_and_the_return_value_is_ignored(
    job: Job, remote: Remote
) -> None:
    """finish_success(result) ends the job; what the worker returns afterwards is ignored."""
    remote.do(lambda ctx: ctx.finish_success("from finish"))
    assert job.wait(SAFETY).state is JobState.SUCCEEDED
    assert remote.do(lambda ctx: ctx.finished)
    remote.finish(returns="from return")
    assert job.result(SAFETY) == "from finish"


def test_finish_failed_fails_the_job_with_that_error(job: Job, remote: Remote) -> None:
    """finish_failed(err) makes the job FAILED with `err`; a later raise does not replace it."""
    error = OperationFailedError("target disk is full")
    remote.do(lambda ctx: ctx.finish_failed(error))
    assert job.wait(SAFETY).state is JobState.FAILED
    remote.finish(raises=OperationFailedError("later"))
    with pytest.raises(OperationFailedError) as caught:
        job.result(SAFETY)
    assert caught.value is error


def test_finish_cancel_without_a_cancel_request_returns_false(job: Job, remote: Remote) -> None:
    """finish_cancel() is False and does nothing while nobody asked to cancel."""
    assert remote.do(lambda ctx: ctx.finish_cancel()) is False
    assert remote.do(lambda ctx: ctx.cancel_requested) is False
    assert job.info().state is JobState.RUNNING
    remote.finish(returns=1)
    assert job.result(SAFETY) == 1


def test_finish_cancel_after_a_cancel_request_ends_the_job_cancelled(
    job: Job, remote: Remote
) -> None:
    """After cancel(), ctx.cancel_requested is True and finish_cancel() ends as CANCELLED."""
    job.cancel()
    assert remote.do(lambda ctx: ctx.cancel_requested) is True
    assert job.info().state is JobState.RUNNING
    assert remote.do(lambda ctx: ctx.finish_cancel()) is True
    assert job.wait(SAFETY).state is JobState.CANCELLED
    remote.finish(returns="ignored")
    assert job.wait(SAFETY).state is JobState.CANCELLED


_FINISHES: dict[str, Callable[[JobContext], object]] = {
    "success": lambda ctx: ctx.finish_success(1),
    "failed": lambda ctx: ctx.finish_failed(OperationFailedError("x")),
    "cancel": lambda ctx: ctx.finish_cancel(),
}


@pytest.mark.parametrize("second", sorted(_FINISHES))
@pytest.mark.parametrize("first", sorted(_FINISHES))
def test_a_second_finish_raises_internal_error_and_the_first_stands(
    job: Job, remote: Remote, first: str, second: str
) -> None:
    """Finishing a job twice is a driver bug: InternalError; the first outcome is kept."""
    job.cancel()  # so finish_cancel() may end the job too
    remote.do(_FINISHES[first])
    final = job.wait(SAFETY)
    with pytest.raises(InternalError, match=job.id):
        remote.do(_FINISHES[second])
    assert job.info() == final
    assert (
        final.state
        is {
            "success": JobState.SUCCEEDED,
            "failed": JobState.FAILED,
            "cancel": JobState.CANCELLED,
        }[first]
    )


@pytest.mark.parametrize("first", sorted(_FINISHES))
def test_finish_cancel_after_the_end_raises_even_without_a_cancel_request(
    job: Job, remote: Remote, first: str
) -> None:
    """finish_cancel() on an ended job is a second finish: InternalError, not a quiet False."""
    if first == "cancel":
        job.cancel()
    remote.do(_FINISHES[first])
    final = job.wait(SAFETY)
    with pytest.raises(InternalError, match=job.id):
        remote.do(lambda ctx: ctx.finish_cancel())
    assert job.info() == final


def test_progress_reported_after_the_end_is_ignored(job: Job, remote: Remote) -> None:
    """initialize/update/update_rel after the job ended neither raise nor change the info."""
    remote.do(lambda ctx: ctx.update(processed=10))
    remote.do(lambda ctx: ctx.finish_success())
    final = job.wait(SAFETY)
    remote.do(lambda ctx: ctx.update(remaining=5.0, percent=10.0, processed=1, total=2))
    remote.do(lambda ctx: ctx.update_rel(remaining=5.0, percent=10.0, processed=1))
    remote.do(lambda ctx: ctx.initialize(eta=3.0, bounded=True))
    assert job.info() == final
    assert (final.percent, final.processed) == (100.0, 10)


def test_wait_for_cancel_times_out_false_without_a_cancel(job: Job, remote: Remote) -> None:
    """wait_for_cancel(timeout) returns False when no cancel came within the timeout."""
    assert remote.do(lambda ctx: ctx.wait_for_cancel(0)) is False
    assert remote.do(lambda ctx: ctx.wait_for_cancel(0.01)) is False
    job.cancel()
    assert remote.do(lambda ctx: ctx.wait_for_cancel(0)) is True


def test_wait_for_cancel_wakes_promptly_on_cancel(driver: LocalJobDriver) -> None:
    """A worker pacing itself with wait_for_cancel(long) wakes as soon as the job is cancelled."""
    waiting = threading.Event()
    woke: list[bool] = []

    def worker(ctx: JobContext) -> None:
        ctx.initialize()
        waiting.set()
        woke.append(ctx.wait_for_cancel(60.0))
        ctx.finish_cancel()

    job = driver.start_job(JobKind.DOMAIN_SAVE, "d", worker)
    assert waiting.wait(SAFETY)
    job.cancel()
    info: JobInfo = job.wait(timeout=1.0)  # DESIGN.md: terminal within 1 s of the request
    assert info.state is JobState.CANCELLED
    assert woke == [True]


@pytest.mark.parametrize(
    "report",
    [
        lambda ctx: ctx.update(remaining=float("inf")),
        lambda ctx: ctx.update(percent=float("nan")),
        lambda ctx: ctx.update(total=float("inf")),
        lambda ctx: ctx.update_rel(remaining=float("nan")),
        lambda ctx: ctx.update_rel(processed=float("inf")),
        lambda ctx: ctx.initialize(eta=float("inf")),
    ],
)
def test_progress_that_is_not_a_finite_number_is_a_worker_bug(
    job: Job, remote: Remote, report: Callable[[JobContext], None]
) -> None:
    """NaN or infinity would make the job's JSON document invalid: InternalError, and the
    snapshot keeps its finite values."""
    remote.do(lambda ctx: ctx.initialize(eta=5.0))
    before = job.info()
    with pytest.raises(InternalError, match="not a finite number"):
        remote.do(report)
    after = job.info()
    assert (after.percent, after.total, after.processed) == (
        before.percent,
        before.total,
        before.processed,
    )
    assert after.remaining is not None
    assert math.isfinite(after.remaining)
