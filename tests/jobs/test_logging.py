"""The engine's debug log: every step of a job's life, in order, from one place; nothing at all
(not even a message formatted) when DEBUG is off."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from tests.jobs.conftest import SAFETY, Blocker, start
from virtjob.errors import OperationFailedError
from virtjob.jobs import Job, JobContext, JobKind, JobState, LocalJobDriver
from virtjob.jobs.local import hold_new_jobs

LOGGER = "virtjob.jobs"


def _steps(caplog: pytest.LogCaptureFixture, job: Job) -> list[str]:
    """The DEBUG messages about `job`, with its id, kind and subject cut off."""
    prefix = f"job {job.id} ({job.kind} of {job.subject!r}): "
    return [
        record.getMessage().removeprefix(prefix)
        for record in caplog.records
        if record.name == LOGGER
        and record.levelno == logging.DEBUG
        and record.getMessage().startswith(prefix)
    ]


def _ended(job: Job) -> threading.Event:
    """Set once `job`'s done callbacks run, which is after its end is logged."""
    ended = threading.Event()
    job.add_done_callback(lambda _: ended.set())
    return ended


def test_a_job_that_succeeds_logs_queued_running_succeeded(
    driver: LocalJobDriver, caplog: pytest.LogCaptureFixture
) -> None:
    """Queued, running, succeeded with how long it ran: in order, each naming the job."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    job = driver.start_job(JobKind.DOMAIN_CREATE, "web", lambda ctx: "made")
    assert _ended(job).wait(SAFETY)
    steps = _steps(caplog, job)
    assert steps[:2] == ["queued", "running"]
    assert len(steps) == 3
    assert steps[2].startswith("succeeded after running ")
    assert steps[2].endswith(" s")


def test_a_failure_is_logged_with_its_error_and_traceback(
    driver: LocalJobDriver, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed job's last step names the error class and message, and carries the error
    (so the handler prints its traceback and its cause)."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    cause = OSError(28, "No space left on device")

    def fail(ctx: JobContext) -> None:
        raise OperationFailedError("cannot write the save file") from cause

    job = driver.start_job(JobKind.DOMAIN_SAVE, "test", fail)
    assert _ended(job).wait(SAFETY)
    *_, last = _steps(caplog, job)
    assert last.startswith("failed after running ")
    assert last.endswith(": OperationFailedError: cannot write the save file")
    [record] = [r for r in caplog.records if r.getMessage().endswith(last)]
    error = job.error()
    assert record.exc_info is not None
    assert record.exc_info[1] is error
    assert error is not None
    assert error.__cause__ is cause


def test_a_cancel_is_logged_as_requested_then_as_the_end(
    driver: LocalJobDriver,
    make_blocker: Callable[..., Blocker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cancelling a running job logs the request (in the cancelling thread, before cancel()
    returns) and then its end as cancelled."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    blocker = make_blocker(honour_cancel=True)
    job = start(driver, blocker)
    ended = _ended(job)
    assert blocker.started.wait(SAFETY)
    job.cancel()
    assert "cancel requested" in _steps(caplog, job)  # logged before cancel() returned
    assert ended.wait(SAFETY)
    steps = _steps(caplog, job)
    assert steps[:3] == ["queued", "running", "cancel requested"]
    assert steps[3].startswith("cancelled after running ")


def test_a_job_cancelled_while_queued_never_logs_running(
    make_driver: Callable[..., LocalJobDriver],
    make_blocker: Callable[..., Blocker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A job cancelled before a thread took it is logged as cancelled while queued."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    driver = make_driver(1)
    blocker = make_blocker()
    start(driver, blocker, subject="occupier")
    assert blocker.started.wait(SAFETY)
    queued = driver.start_job(JobKind.DOMAIN_SAVE, "waiting", lambda ctx: None)
    queued.cancel()
    assert queued.info().state is JobState.CANCELLED
    steps = _steps(caplog, queued)
    assert steps[0] == "queued"
    assert steps[1:] == ["cancelled while queued"]


def test_a_held_job_says_it_is_held(
    driver: LocalJobDriver, caplog: pytest.LogCaptureFixture
) -> None:
    """A job started inside hold_new_jobs is logged as held, then runs once released."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with hold_new_jobs():
        job = driver.start_job(JobKind.DOMAIN_SAVE, "test", lambda ctx: None)
        assert _steps(caplog, job) == ["queued, held until released"]
    assert _ended(job).wait(SAFETY)
    assert _steps(caplog, job)[1] == "running"


class _CountedError(OperationFailedError):
    """An error that counts how often its message is formatted."""

    formatted = 0

    def __str__(self) -> str:
        type(self).formatted += 1
        return super().__str__()


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO])
def test_nothing_is_formatted_when_debug_is_off(
    driver: LocalJobDriver, caplog: pytest.LogCaptureFixture, level: int
) -> None:
    """With the logger above DEBUG, a failing job's error is never formatted for the log and
    no record is made; at DEBUG (the control) it is."""
    caplog.set_level(level, logger=LOGGER)
    _CountedError.formatted = 0

    def fail(ctx: JobContext) -> None:
        raise _CountedError("counted")

    job = driver.start_job(JobKind.DOMAIN_SAVE, "test", fail)
    assert _ended(job).wait(SAFETY)
    debug = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.DEBUG]
    if level == logging.DEBUG:
        assert debug
        assert _CountedError.formatted > 0
    else:
        assert debug == []
        assert _CountedError.formatted == 0
