"""The job engine: asynchronous, cancellable operations with progress.

It knows nothing about virtualization; drivers use it and it never imports them.

- `Job[T]` is the handle a caller holds, typed by its result; `JobInfo` a snapshot of its
  progress. (Users hold `virtjob.Job`, its subclass outside the engine that also answers
  `domain()` and `network()`.)
- `JobContext` is what a worker holds: ``initialize``, ``update``/``update_rel``,
  ``cancel_requested``, ``finish_cancel``/``finish_success``/``finish_failed``.
- `LocalJobDriver` runs workers on a bounded pool of threads; `JobDriver` is the protocol
  a `Job` speaks to whoever runs it (local threads, or a daemon for the remote driver).
"""

from virtjob.jobs.context import JobContext
from virtjob.jobs.job import Job
from virtjob.jobs.local import LocalJobDriver
from virtjob.jobs.protocol import JobDriver
from virtjob.jobs.types import JobInfo, JobKind, JobOutcome, JobState

__all__ = [
    "Job",
    "JobContext",
    "JobDriver",
    "JobInfo",
    "JobKind",
    "JobOutcome",
    "JobState",
    "LocalJobDriver",
]
