"""`Recorder`: every job the daemon started, live or from its history, and their persistence.

For each job it starts, the daemon calls `Recorder.track`, which

- inserts the job's row in the store at once;
- starts a watcher thread that follows ``job.watch()`` and (1) hands every change to the
  job's `Channel` on the event loop, for long-polls and event streams, and (2) writes a
  progress snapshot to the store on a state change and at most once per `SNAPSHOT_EVERY`
  seconds otherwise;
- registers a done callback that writes the final state, error and result as soon as the job
  ends, then applies the retention limit.

Jobs of a previous daemon process exist only as stored rows: `payload` and `list_payloads`
serve both kinds the same way. `recover` runs at start-up, before any request: jobs left
queued or running by a daemon that died are marked FAILED ("interrupted by daemon restart")
and the hidden partial files beside their target paths are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable

from virtjob.drivers.base import DomainRef, NetworkRef
from virtjob.drivers.remote import wire
from virtjob.errors import JobTimeoutError, NoJobError, VirtError
from virtjob.files import remove_stale_partials
from virtjob.jobs import Job, JobInfo, JobState

from .store import JobRow, Store

log = logging.getLogger("virtjob.daemon")

SNAPSHOT_EVERY = 1.0
"""Seconds between two stored progress snapshots of a running job (state changes go at once)."""
INTERRUPTED = (
    "interrupted by daemon restart: virtjobd stopped while this job was {state}; its partial"
    " output was removed, start the operation again"
)


class Channel:
    """The latest info of one job and the coroutines waiting for it to change.

    Touched only on the event loop's thread: the watcher thread posts with
    ``loop.call_soon_threadsafe(channel.publish, info)``.
    """

    __slots__ = ("_waiters", "info", "version")

    def __init__(self, info: JobInfo) -> None:
        self.info = info
        self.version = 0
        self._waiters: list[asyncio.Future[None]] = []

    def publish(self, info: JobInfo) -> None:
        """Record a new info and wake every waiter."""
        if self.info.state.terminal:
            return  # the final info is final
        self.info = info
        self.version += 1
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def changed(self, since: int, timeout: float | None) -> bool:
        """Wait until `version` differs from `since` or `timeout` passes; return whether it did."""
        if self.version != since:
            return True
        if timeout is not None and timeout <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
        return True

    async def terminal(self, timeout: float | None) -> bool:
        """Wait until the job is final or `timeout` passes; return whether it is."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self.info.state.terminal:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            await self.changed(self.version, left)
        return True


class Tracked:
    """A job this daemon process started: its handle, host, target path, times and channel."""

    __slots__ = ("channel", "created", "ended", "host", "job", "started", "target", "watcher")

    def __init__(self, job: Job, host: str, target: str | None, info: JobInfo) -> None:
        self.job = job
        self.host = host
        self.target = target
        self.created = time.time()
        self.started: float | None = None
        self.ended: float | None = None
        self.channel = Channel(info)
        self.watcher: threading.Thread | None = None

    def payload(self) -> wire.Json:
        """The job as the API shows it, read fresh from the job driver."""
        job = self.job
        info = job.info()
        result: wire.Json | None = None
        error: wire.Json | None = None
        if info.state.terminal:
            outcome = job.driver.job_outcome(job.id)
            if outcome is not None:
                if isinstance(outcome.result, DomainRef | NetworkRef):
                    result = wire.ref_to_dict(outcome.result)
                if outcome.error is not None:
                    error = wire.error_to_dict(outcome.error)
        return {
            "id": job.id,
            "host": self.host,
            "kind": str(job.kind),
            "subject": job.subject,
            "info": wire.info_to_dict(info),
            "result": result,
            "error": error,
            "target": self.target,
            "created": self.created,
            "started": self.started,
            "ended": self.ended,
        }


def row_payload(row: JobRow) -> wire.Json:
    """The API form of a stored job (one of a previous daemon process, or pruned from memory)."""
    terminal = JobState(row.state).terminal
    result: wire.Json | None = None
    if row.result_type is not None:
        result = {"type": row.result_type, "name": row.result_name, "uuid": row.result_uuid}
    error: wire.Json | None = None
    if row.error_code is not None:
        error = {"code": row.error_code, "message": row.error_message or ""}
    return {
        "id": row.id,
        "host": row.host,
        "kind": row.kind,
        "subject": row.subject,
        "info": {
            "state": row.state,
            "bounded": row.bounded,
            "elapsed": row.elapsed,
            "remaining": 0.0 if terminal else None,
            "percent": row.percent,
            "processed": row.processed,
            "total": row.total,
            "cancel_requested": row.cancel_requested,
        },
        "result": result,
        "error": error,
        "target": row.target,
        "created": row.created,
        "started": row.started,
        "ended": row.ended,
    }


def _no_job(job_id: str) -> NoJobError:
    return NoJobError(
        f"no job with id {job_id!r} on this daemon (never started, destroyed, or past the"
        f" retention limit); list jobs to see the ids that exist"
    )


class Recorder:
    """Tracks live jobs and serves stored ones; keeps at most `retain` finished jobs."""

    def __init__(self, store: Store, retain: int) -> None:
        self._store = store
        self._retain = retain
        self._lock = threading.Lock()
        self._live: dict[str, Tracked] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Set the event loop that channels live on (None detaches it, at shutdown)."""
        self._loop = loop

    # -- start-up -----------------------------------------------------------------------------

    def recover(self) -> list[JobRow]:
        """Fail the jobs a dead daemon left unfinished and remove their partial files.

        Returns the rows that were interrupted.
        """
        rows = self._store.interrupt_unfinished(INTERRUPTED.format(state="running"))
        for row in rows:
            log.warning(
                "job %s (%s of %r on %s) was %s when the daemon stopped: marked failed",
                row.id,
                row.kind,
                row.subject,
                row.host,
                row.state,
            )
            if row.target:
                remove_partials(row.target)
        return rows

    # -- tracking -----------------------------------------------------------------------------

    def track(self, job: Job, host: str, target: str | None) -> Tracked:
        """Start recording a job just started on `host` (writing `target`, if any)."""
        tracked = Tracked(job, host, target, job.info())
        self._store.insert_job(
            JobRow(
                id=job.id,
                host=host,
                kind=str(job.kind),
                subject=job.subject,
                state=str(tracked.channel.info.state),
                created=tracked.created,
                started=None,
                ended=None,
                bounded=False,
                elapsed=0.0,
                percent=None,
                processed=None,
                total=None,
                cancel_requested=False,
                error_code=None,
                error_message=None,
                result_type=None,
                result_name=None,
                result_uuid=None,
                target=target,
            )
        )
        with self._lock:
            self._live[job.id] = tracked
        watcher = threading.Thread(
            target=self._watch, args=(tracked,), name=f"virtjobd-watch-{job.id}", daemon=True
        )
        tracked.watcher = watcher
        watcher.start()
        job.add_done_callback(lambda _job: self._finished(tracked))
        return tracked

    def _watch(self, tracked: Tracked) -> None:
        job = tracked.job
        stored: tuple[JobState, bool] = (JobState.QUEUED, False)
        stored_at = 0.0
        try:
            for info in job.watch(0.0):
                if tracked.started is None and info.state is not JobState.QUEUED:
                    tracked.started = max(tracked.created, time.time() - info.elapsed)
                self._post(tracked.channel, info)
                if info.state.terminal:
                    return  # the done callback records the final state
                now = time.monotonic()
                if (info.state, info.bounded) != stored or now - stored_at >= SNAPSHOT_EVERY:
                    stored, stored_at = (info.state, info.bounded), now
                    self._store.update_progress(
                        job.id,
                        str(info.state),
                        tracked.started,
                        info.bounded,
                        info.elapsed,
                        info.percent,
                        info.processed,
                        info.total,
                        info.cancel_requested,
                    )
        except VirtError as exc:
            log.error("watching job %s failed: %s", job.id, exc)

    def _post(self, channel: Channel, info: JobInfo) -> None:
        loop = self._loop
        if loop is None:
            channel.info = info  # no loop (tests, shutdown): nobody can be waiting
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(channel.publish, info)

    def _finished(self, tracked: Tracked) -> None:
        job = tracked.job
        try:
            info = job.info()
            outcome = job.driver.job_outcome(job.id)
        except NoJobError:
            return  # destroyed already
        tracked.ended = time.time()
        if tracked.started is None and info.elapsed > 0:
            tracked.started = max(tracked.created, tracked.ended - info.elapsed)
        error = result = None
        if outcome is not None:
            if outcome.error is not None:
                error = (str(outcome.error.code), outcome.error.message)
            if isinstance(outcome.result, DomainRef | NetworkRef):
                ref = wire.ref_to_dict(outcome.result)
                result = (ref["type"], ref["name"], ref["uuid"])
        try:
            self._store.finish_job(
                job.id,
                str(info.state),
                tracked.ended,
                tracked.started,
                info.bounded,
                info.elapsed,
                info.percent,
                info.processed,
                info.total,
                info.cancel_requested,
                error,
                result,
            )
            self._forget(self._store.prune(self._retain))
        except VirtError:
            log.exception("recording the end of job %s failed", job.id)

    def _forget(self, ids: Iterable[str]) -> None:
        for job_id in ids:
            with self._lock:
                tracked = self._live.pop(job_id, None)
            if tracked is not None:
                with contextlib.suppress(VirtError):
                    tracked.job.destroy()

    # -- serving ------------------------------------------------------------------------------

    def get(self, job_id: str) -> Tracked | None:
        """The live job `job_id`, or None (it may still be a stored one)."""
        return self._live.get(job_id)

    def payload(self, job_id: str) -> wire.Json:
        """The API form of job `job_id`, live or stored; `NoJobError` if there is none."""
        tracked = self._live.get(job_id)
        if tracked is not None:
            try:
                return tracked.payload()
            except NoJobError:
                pass  # destroyed or pruned this instant; the store may still have it
        row = self._store.get_job(job_id)
        if row is None:
            raise _no_job(job_id)
        return row_payload(row)

    def list_payloads(self, host: str | None) -> list[wire.Json]:
        """Every job (of `host`, when given), oldest first."""
        out: list[wire.Json] = []
        for row in self._store.list_jobs(host):
            tracked = self._live.get(row.id)
            if tracked is not None:
                with contextlib.suppress(NoJobError):
                    out.append(tracked.payload())
                    continue
            out.append(row_payload(row))
        return out

    def cancel(self, job_id: str) -> wire.Json:
        """Ask job `job_id` to stop (a no-op once final); return it. `NoJobError` if unknown."""
        tracked = self._live.get(job_id)
        if tracked is not None:
            with contextlib.suppress(NoJobError):
                tracked.job.cancel()
        return self.payload(job_id)

    def destroy(self, job_id: str) -> None:
        """Forget a final job; `OperationInvalidError` while it runs, `NoJobError` if unknown."""
        tracked = self._live.get(job_id)
        if tracked is not None:
            with contextlib.suppress(NoJobError):
                tracked.job.destroy()  # OperationInvalidError while it runs
            with self._lock:
                self._live.pop(job_id, None)
        if not self._store.delete_job(job_id) and tracked is None:
            raise _no_job(job_id)

    # -- shutting down ------------------------------------------------------------------------

    def unfinished(self) -> list[Tracked]:
        """The live jobs that are not final yet."""
        with self._lock:
            live = list(self._live.values())
        out = []
        for tracked in live:
            with contextlib.suppress(NoJobError):
                if not tracked.job.info().state.terminal:
                    out.append(tracked)
        return out

    def cancel_all(self) -> int:
        """Ask every unfinished job to stop; return how many there were."""
        jobs = self.unfinished()
        for tracked in jobs:
            with contextlib.suppress(NoJobError):
                tracked.job.cancel()
        return len(jobs)

    def wait_all(self, timeout: float) -> list[Tracked]:
        """Wait up to `timeout` seconds for every job to end and be recorded.

        Returns the jobs still unfinished at the deadline (their rows stay "running", so the
        next start marks them interrupted).
        """
        deadline = time.monotonic() + timeout
        late: list[Tracked] = []
        for tracked in self.unfinished():
            try:
                tracked.job.wait(max(0.0, deadline - time.monotonic()))
            except JobTimeoutError:
                late.append(tracked)
            except NoJobError:
                pass
        with self._lock:
            watchers = [t.watcher for t in self._live.values() if t.watcher is not None]
        for watcher in watchers:
            watcher.join(max(0.0, deadline - time.monotonic()))
        return late


def remove_partials(target: str) -> list[str]:
    """Remove the hidden partial files a save or dump to `target` may have left; return them.

    Partials that a live writer holds locked are kept (see `virtjob.files`).
    """
    return remove_stale_partials(target)
