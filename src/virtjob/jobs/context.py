"""`JobContext`: what a worker holds while it runs a job (the proposal's ``virJob*`` helpers)."""

from __future__ import annotations

import logging
import math
import time

from virtjob.errors import InternalError, VirtError
from virtjob.jobs.record import JobRecord
from virtjob.jobs.types import JobKind, JobState

log = logging.getLogger("virtjob.jobs")
_monotonic = time.monotonic


def _check_finite(job_id: str, **values: float | None) -> None:
    """Raise `InternalError` for a progress value that is NaN or infinite (a worker's bug:
    a snapshot must stay JSON, which has neither)."""
    for name, value in values.items():
        if value is not None and not math.isfinite(value):
            raise InternalError(f"job {job_id}: progress {name}={value!r} is not a finite number")


class JobContext:
    """The worker's side of a job: report progress, notice cancellation, finish.

    Progress calls made after the job has ended are ignored (and logged at debug level);
    finishing a job twice raises `InternalError`, because that is a bug in the driver.
    `percent` never goes down: a lower value is ignored. When the worker reports `processed`
    and `total` but no `percent`, the percent follows from them. When it reports percent but
    no fresh `remaining`, the engine estimates `remaining` from the observed rate.
    """

    __slots__ = ("_lock", "_record")

    def __init__(self, record: JobRecord) -> None:
        self._record = record
        self._lock = record.lock

    @property
    def id(self) -> str:
        """The id of the job being run."""
        return self._record.id

    @property
    def kind(self) -> JobKind:
        """The kind of the job being run."""
        return self._record.kind

    @property
    def subject(self) -> str:
        """The domain, network or path the job acts on."""
        return self._record.subject

    @property
    def cancel_requested(self) -> bool:
        """True once someone has asked the job to stop."""
        return self._record.cancel_requested

    def initialize(self, eta: float | None = None, bounded: bool = True) -> None:
        """Say how the job will report progress (proposal: ``virJobInitialize``).

        `bounded` jobs report a percent (starting at 0); unbounded ones do not until they
        succeed. `eta` is the first estimate of the seconds left, if the worker has one.
        Raises `InternalError` if called twice.
        """
        r = self._record
        _check_finite(r.id, eta=eta)
        with self._lock:
            if r.state.terminal:
                log.debug("job %s: initialize after the end ignored", r.id)
                return
            if r.initialized:
                raise InternalError(f"job {r.id}: initialize() may be called only once")
            now = _monotonic()
            r.initialized = True
            r.bounded = bounded
            if bounded:
                r.percent = 0.0
            r.origin_at = r.percent_at = now
            r.origin_percent = 0.0
            if eta is not None:
                r.eta = max(0.0, float(eta))
                r.eta_at = now
            r.changed()

    def update(
        self,
        remaining: float | None = None,
        percent: float | None = None,
        processed: int | None = None,
        total: int | None = None,
    ) -> None:
        """Set progress to absolute values; None leaves a value as it is.

        Raises `InternalError` for a value that is NaN or infinite.
        """
        r = self._record
        _check_finite(r.id, remaining=remaining, percent=percent, processed=processed, total=total)
        with self._lock:
            if r.state is not JobState.RUNNING:
                log.debug("job %s: update while %s ignored", r.id, r.state)
                return
            now = _monotonic()
            if total is not None:
                r.total = total
            if processed is not None:
                r.processed = processed
                if percent is None and r.total:
                    percent = processed * 100.0 / r.total
            if remaining is not None:
                r.eta = max(0.0, remaining)
                r.eta_at = now
            if percent is not None and r.bounded:
                current = r.percent or 0.0
                if percent > current:
                    r.percent = min(100.0, percent)
                    r.percent_at = now
            r.changed()

    def update_rel(
        self,
        remaining: float | None = None,
        percent: float | None = None,
        processed: int | None = None,
    ) -> None:
        """Change progress by relative amounts (proposal: ``virJobUpdateRel``).

        `remaining` adds seconds to the estimate (usually negative), `percent` adds to the
        percent done, `processed` adds bytes. Elapsed time is measured, not reported.
        Raises `InternalError` for a `remaining` or `processed` that is NaN or infinite.
        """
        r = self._record
        with self._lock:
            if r.state is not JobState.RUNNING:
                log.debug("job %s: update_rel while %s ignored", r.id, r.state)
                return
            if remaining is None and processed is None:  # the common case: percent alone
                if percent is not None and percent > 0 and r.bounded:
                    value = (r.percent or 0.0) + percent
                    r.percent = value if value < 100.0 else 100.0
                    r.percent_at = _monotonic()
                r.changed()
                return
            _check_finite(r.id, remaining=remaining, percent=percent, processed=processed)
            now = _monotonic()
            if processed is not None:
                r.processed = (r.processed or 0) + processed
                if percent is None and r.total:
                    percent = r.processed * 100.0 / r.total - (r.percent or 0.0)
            if remaining is not None:
                r.eta = max(0.0, (r.eta or 0.0) + remaining)
                r.eta_at = now
            if percent is not None and percent > 0 and r.bounded:
                r.percent = min(100.0, (r.percent or 0.0) + percent)
                r.percent_at = now
            r.changed()

    def wait_for_cancel(self, timeout: float | None) -> bool:
        """Sleep up to `timeout` seconds, waking early on a cancel; return `cancel_requested`.

        Lets a worker pace its work without sleeping through a cancel.
        """
        return self._record.wait_cancel(timeout)

    def finish_cancel(self) -> bool:
        """End the job as CANCELLED if a cancel was requested (proposal: ``virJobFinishCancel``).

        Returns True if it did (the worker should return), False if no cancel was requested.
        Clean up before calling it when there is something to undo. Raises `InternalError`
        if the job has already ended.
        """
        r = self._record
        if not (r.cancel_requested or r.state.terminal):
            return False
        r.end(JobState.CANCELLED, None, None)  # raises InternalError if already final
        return True

    def finish_success(self, result: object = None) -> None:
        """End the job as SUCCEEDED with `result` (proposal: ``virJobFinishSuccess``).

        Raises `InternalError` if the job has already ended.
        """
        self._record.end(JobState.SUCCEEDED, result, None)

    def finish_failed(self, error: VirtError) -> None:
        """End the job as FAILED with `error`. Raises `InternalError` if it has already ended."""
        if not isinstance(error, VirtError):
            wrapped = InternalError(f"job {self.id} failed: {error!r}")
            wrapped.__cause__ = error
            error = wrapped
        self._record.end(JobState.FAILED, None, error)

    @property
    def finished(self) -> bool:
        """True once the worker has ended the job with one of the ``finish_*`` calls."""
        return self._record.state.terminal
