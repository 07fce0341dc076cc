"""The small protocol a `Job` handle speaks to whoever runs its job.

`LocalJobDriver` implements it for jobs run by threads in this process; the remote driver
implements it by forwarding each call to a daemon. `Job` knows only this protocol, so one
handle class serves both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from virtjob.jobs.types import JobInfo, JobOutcome

if TYPE_CHECKING:
    from virtjob.api.document import JobDocument


class JobDriver(Protocol):
    """Operations on jobs addressed by id. Every method raises `NoJobError` for an unknown id."""

    def job_info(self, job_id: str) -> JobInfo:
        """Return a snapshot of the job's progress."""
        ...

    def job_cancel(self, job_id: str) -> None:
        """Ask the job to stop; return at once. A no-op on a finished job."""
        ...

    def job_wait(self, job_id: str, timeout: float | None) -> JobInfo:
        """Block until the job is final and return its last info; `JobTimeoutError` on timeout."""
        ...

    def job_watch(self, job_id: str, interval: float) -> Iterator[JobInfo]:
        """Yield an info per change, at most one per `interval`, ending with the final one."""
        ...

    def job_outcome(self, job_id: str) -> JobOutcome | None:
        """Return how the job ended, or None while it has not."""
        ...

    def job_document(self, job_id: str) -> JobDocument:
        """Return everything known about the job, as `virtjob.api.JobDocument`."""
        ...

    def job_add_done_callback(self, job_id: str, fn: Callable[[], None]) -> None:
        """Call `fn()` once when the job is final; at once, in this thread, if it already is."""
        ...

    def job_destroy(self, job_id: str) -> None:
        """Forget a finished job; `OperationInvalidError` while it is not final."""
        ...
