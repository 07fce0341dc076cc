"""`Job[T]`: the handle a caller holds while an operation runs in the background.

Like `concurrent.futures.Future[T]`, a handle is typed by what its job yields: `result()`
returns a `T`. The engine stores whatever its worker returned (an `object`); a handle made
with a *result adapter* (``Callable[[object], T]``) passes the stored value through it, which
is how the public API turns a driver's refs into `Domain`/`Network` objects (`virtjob.job`).
A handle whose result type nobody knows (`LocalJobDriver.lookup_job`, a driver's listing) is a
`Job[object]`, spelled plain `Job`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from math import inf
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Self, TypeVar, cast

from virtjob.errors import (
    InternalError,
    InvalidArgError,
    JobCancelledError,
    NoJobError,
    VirtError,
)
from virtjob.jobs.protocol import JobDriver
from virtjob.jobs.types import JobInfo, JobKind, JobState

if TYPE_CHECKING:
    from typing_extensions import TypeVar as DefaultTypeVar

    from virtjob.api.document import JobDocument

    T_co = DefaultTypeVar("T_co", covariant=True, default=object)
else:
    # A plain `Job` means `Job[object]` (a TypeVar default, PEP 696: in `typing` from Python
    # 3.13; the type checker reads it from typing_extensions, the 3.11 runtime needs none).
    T_co = TypeVar("T_co", covariant=True)

U = TypeVar("U")

log = logging.getLogger("virtjob.jobs")


class Job(Generic[T_co]):
    """A handle on one asynchronous job, local or remote, whose result is a `T_co`.

    Every method is thread-safe and asks the job driver for fresh state; the handle itself holds
    nothing but the job's identity (and how to present its result). Handles for the same job
    compare equal. Used as a context manager, the job is destroyed on exit: after waiting for it
    when the block ends normally, or after cancelling it and waiting when the block raises.
    The type parameter is covariant: a `Job[Domain]` is a `Job[Domain | None]` and a `Job`.
    """

    __slots__ = ("_adapt", "_driver", "_id", "_kind", "_subject")

    def __init__(
        self,
        driver: JobDriver,
        job_id: str,
        kind: JobKind,
        subject: str,
        *,
        result_adapter: Callable[[object], T_co] | None = None,
    ) -> None:
        """A handle on job `job_id` of `driver`. With `result_adapter`, results pass through
        it (`result()`); without, they are the worker's value as it is, and whoever makes the
        handle (`LocalJobDriver.start_job`) types it by what the worker returns."""
        self._driver = driver
        self._id = job_id
        self._kind = kind
        self._subject = subject
        self._adapt = result_adapter

    @property
    def id(self) -> str:
        """The job's id: a string, unique on its host."""
        return self._id

    @property
    def kind(self) -> JobKind:
        """What operation the job performs."""
        return self._kind

    @property
    def subject(self) -> str:
        """The name of the domain or network the job acts on (a restore: the saved domain's)."""
        return self._subject

    @property
    def driver(self) -> JobDriver:
        """The job driver that runs this job."""
        return self._driver

    def with_result_adapter(self, adapt: Callable[[object], U]) -> Job[U]:
        """Return a handle on the same job whose results pass through `adapt` first.

        `adapt` receives the value the job's worker produced (not this handle's adapted one).
        Raises nothing; what `adapt` raises comes out of `result()`.
        """
        return Job(self._driver, self._id, self._kind, self._subject, result_adapter=adapt)

    def info(self) -> JobInfo:
        """Return a snapshot of the job's progress. Raises `NoJobError` once destroyed."""
        return self._driver.job_info(self._id)

    def cancel(self) -> None:
        """Ask the job to stop and return at once.

        A queued job becomes CANCELLED at once; a running one is asked to stop and may still
        succeed; a finished one is left as it is. Raises `NoJobError` once destroyed.
        """
        self._driver.job_cancel(self._id)

    def wait(self, timeout: float | None = None) -> JobInfo:
        """Block until the job is final and return its last info.

        Does not raise the job's error. Raises `JobTimeoutError` (a `TimeoutError`) when
        `timeout` seconds pass first, `InvalidArgError` for a timeout that is not a number of
        seconds >= 0, and `NoJobError` once destroyed.
        """
        return self._driver.job_wait(self._id, _check_timeout(timeout))

    def result(self, timeout: float | None = None) -> T_co:
        """Wait for the job and return its result.

        Raises the job's `VirtError` if it failed, `JobCancelledError` if it was cancelled,
        `JobTimeoutError` if `timeout` passes first, `NoJobError` once destroyed.
        """
        self.wait(timeout)
        outcome = self._driver.job_outcome(self._id)
        if outcome is None:  # wait() returned, so the job is final: its driver contradicts itself
            raise InternalError(
                f"job {self._id} ({self._kind} of {self._subject!r}) has ended but its driver"
                f" reports no outcome; this is a bug, see the log"
            )
        if outcome.state is JobState.SUCCEEDED:
            return self._adapted(outcome.result)
        if outcome.state is JobState.CANCELLED:
            raise JobCancelledError(
                f"job {self._id} ({self._kind} of {self._subject!r}) was cancelled"
            )
        if outcome.error is None:  # a record of an older virtjob may lack it
            raise InternalError(
                f"job {self._id} ({self._kind} of {self._subject!r}) failed, but no error was"
                f" recorded for it; its host's log may say why"
            )
        raise outcome.error

    def document(self) -> JobDocument:
        """Return everything known about the job at once: identity, host, progress, outcome,
        target file and times (`virtjob.api.JobDocument`, what ``--json`` prints and virtjobd
        answers). Raises `NoJobError` once destroyed."""
        return self._driver.job_document(self._id)

    def error(self) -> VirtError | None:
        """Return the error of a FAILED job, else None. Raises `NoJobError` once destroyed."""
        outcome = self._driver.job_outcome(self._id)
        return outcome.error if outcome is not None else None

    def watch(self, interval: float = 0.1) -> Iterator[JobInfo]:
        """Yield a `JobInfo` per observed change, ending with the final one.

        Changes closer together than `interval` seconds are coalesced into one; the final info
        is delivered without delay. Raises `InvalidArgError` for a negative interval.
        """
        return self._driver.job_watch(self._id, _seconds(interval, "a watch interval"))

    def add_done_callback(self, fn: Callable[[Self], object]) -> None:
        """Call `fn(job)` once when the job is final.

        If it already is, `fn` runs before this returns, in the caller's thread. Exceptions
        from `fn` are logged, not raised. Raises `NoJobError` once destroyed.
        """

        def call() -> None:
            try:
                fn(self)
            except Exception:
                log.exception("done callback %r of job %s raised", fn, self._id)

        self._driver.job_add_done_callback(self._id, call)

    def destroy(self) -> None:
        """Release the job's record; afterwards every call on it raises `NoJobError`.

        Raises `OperationInvalidError` while the job is not final.
        """
        self._driver.job_destroy(self._id)

    def _result_if(self, wanted: bool) -> T_co | None:
        """The result if `wanted` and the job has succeeded, else None (never the error).
        Raises `NoJobError` once destroyed. For subclasses: `virtjob.job.Job.domain`."""
        outcome = self._driver.job_outcome(self._id)  # raises NoJobError once destroyed
        if not wanted or outcome is None or outcome.state is not JobState.SUCCEEDED:
            return None
        return self._adapted(outcome.result)

    def _adapted(self, value: object) -> T_co:
        if self._adapt is not None:
            return self._adapt(value)
        return cast("T_co", value)  # the maker typed the handle by what its worker returns

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is not None:
                self.cancel()
            self.wait()
            self.destroy()
        except NoJobError:
            pass  # destroyed inside the block already

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Job):
            return NotImplemented
        return self._driver is other._driver and self._id == other._id

    def __hash__(self) -> int:
        return hash((id(self._driver), self._id))

    def __repr__(self) -> str:
        return f"<Job {self._id} {self._kind} of {self._subject!r}>"


def _seconds(value: float, what: str) -> float:
    """`value` if it is a finite number of seconds >= 0; else `InvalidArgError` naming `what`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < inf:
        raise InvalidArgError(f"{what} is a number of seconds >= 0, not {value!r}")
    return value


def _check_timeout(timeout: float | None) -> float | None:
    """`timeout` if it is None or a finite number of seconds >= 0; else `InvalidArgError`."""
    return None if timeout is None else _seconds(timeout, "a timeout (or None)")
