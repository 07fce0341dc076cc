"""`Recorder`: every job the daemon started, live or from its history, and their persistence.

For each job a host accepts, the daemon calls `Recorder.track` at once, inside
`virtjob.jobs.local.hold_new_jobs` (so the job cannot start before this returns), which

- inserts the job's document (`Job.document`, the one mapping from a job to what the API
  shows) in the store (if that fails, the job is cancelled before it ever ran and the
  request fails with `OperationFailedError` naming it: no job runs unrecorded);
- registers a done callback that writes the final document as soon as the job ends, then
  applies the retention limit;
- has the job followed by one of a fixed pool of `WATCHERS` threads (not a thread per job):
  the job marks a `ChangeFeed` on every change (`LocalJobDriver.job_follow`), and the
  watcher (1) hands the new info to the job's `Channel` on the event loop, for long-polls and
  event streams, and (2) writes the job's document to the store on a state change at once,
  otherwise at most once per `SNAPSHOT_EVERY` seconds (the last one is never left unwritten).
  A store error on one job is logged and the watcher goes on with the others.

**Retention.** A finished job is *held*, never pruned, while someone waits for it: a long
poll (`wait`) or an event stream (`following`) is open on it, or nobody has yet been handed
its end by a long poll (so a client that started it and then waits, even after a storm of
other jobs, finds it) — that last hold lapses `UNSEEN_HOLD` seconds after the end, so jobs
nobody ever asks about do not pile up. ``--retain-jobs N`` keeps the N most recently ended
of the other finished jobs. The limit is applied where a job ends or a hold is let go: the
rows go at once (no listing shows a job past the limit) and the job leaves the daemon's view;
releasing its engine record (`Job.destroy`, which waits for the job's done callbacks) is
handed to the first watcher thread, so a done callback or the event loop never waits for
another job's callbacks.

Jobs of a previous daemon process exist only as stored documents: `document` and
`documents` serve both kinds the same way (a live job's document and its stored one are the
same JSON once it has ended). `recover` runs at start-up, before any request: the documents
of jobs left queued or running by a daemon that died are rewritten as FAILED with an
operation-failed error ("interrupted by daemon restart", saying which of the two they were),
and the hidden partial files beside their target paths are removed. An unfinished job whose
stored document this virtjobd cannot read is marked failed by the store through its columns
alone (`Store.interrupt_unfinished`): it never stops the daemon from starting.

Every transition (tracked, stored, ended, held, let go, pruned) is logged at debug level.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterable

from virtjob.api import JobDocument
from virtjob.errors import (
    InternalError,
    JobTimeoutError,
    NoJobError,
    OperationFailedError,
    VirtError,
)
from virtjob.files import remove_stale_partials
from virtjob.jobs import Job, JobInfo, JobState, LocalJobDriver
from virtjob.jobs.feed import ChangeFeed

from .store import Store

log = logging.getLogger("virtjob.daemon")

SNAPSHOT_EVERY = 1.0
"""Seconds between two stored progress snapshots of a running job (state changes go at once)."""
WATCHERS = 2
"""Threads that follow every live job of the daemon, whatever their number."""
UNSEEN_HOLD = 600.0
"""Seconds a finished job whose end no long poll has handed out yet is kept past the limit."""
HOLD_CHECK = 10.0
"""Seconds between two looks for lapsed holds (see `UNSEEN_HOLD`)."""
RECHECK = 1.0
"""Seconds between two direct checks of a job during a long poll (a bound on a missed event)."""
INTERRUPTED = {
    "queued": (
        "interrupted by daemon restart: virtjobd stopped while this job was queued; it never"
        " started and changed nothing, start the operation again"
    ),
    "running": (
        "interrupted by daemon restart: virtjobd stopped while this job was running; its"
        " partial output was removed, start the operation again"
    ),
}
"""The error message of a job a dead daemon left unfinished, by the state it was recorded in."""


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
    """A job this daemon process started: its handle and channel, what its watcher last
    stored (`stored`, `stored_at`), and what holds it back from pruning once it has ended
    (`waiters`, `seen`, `ended`, `ended_at`; changed under the recorder's lock).

    Everything the API shows of it comes from `job.document()`.
    """

    __slots__ = (
        "channel",
        "ended",
        "ended_at",
        "job",
        "recorded",
        "seen",
        "stored",
        "stored_at",
        "waiters",
    )

    def __init__(self, job: Job, info: JobInfo) -> None:
        self.job = job
        self.channel = Channel(info)
        self.stored: tuple[JobState, bool] = (info.state, info.bounded)
        self.stored_at = time.monotonic()
        self.waiters = 0
        self.seen = False
        self.ended = False
        self.ended_at = 0.0
        self.recorded = False
        """True once the end is stored (the channel shows the end only from then on)."""


def interrupted(document: JobDocument, now: float) -> JobDocument:
    """The document of a job a dead daemon left queued or running, as the next one shows it:
    FAILED at `now` with operation-failed ``INTERRUPTED[its state]``, nothing remaining, its
    last progress kept."""
    state = str(document.info.state)
    info = dataclasses.replace(document.info, state=JobState.FAILED, remaining=0.0)
    return dataclasses.replace(
        document,
        info=info,
        result=None,
        error=OperationFailedError(INTERRUPTED.get(state, INTERRUPTED["running"])),
        ended=now,
    )


def _no_job(job_id: str) -> NoJobError:
    return NoJobError(
        f"no job with id {job_id!r} on this daemon (never started, destroyed, or past the"
        f" retention limit); list jobs to see the ids that exist"
    )


class Recorder:
    """Tracks live jobs and serves stored ones; keeps at most `retain` finished jobs that
    nobody waits for (see the module docs). `close()` stops its watcher threads."""

    def __init__(
        self,
        store: Store,
        retain: int,
        *,
        unseen_hold: float = UNSEEN_HOLD,
        watchers: int = WATCHERS,
    ) -> None:
        """Start the `watchers` threads.

        Raises `RuntimeError` if the system refuses a thread, `InternalError` if the store fails.
        """
        self._store = store
        self._retain = retain
        self._unseen_hold = unseen_hold
        self._lock = threading.Lock()
        self._live: dict[str, Tracked] = {}
        self._doomed: list[Job] = []
        """Pruned jobs whose engine records the first watcher thread is to release."""
        self._held: set[str] = set()
        """Ids of finished live jobs that someone may still wait for (never pruned)."""
        self._finals = store.count_final()
        """Finished jobs in the store (kept up to date, so a prune runs only when needed)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._feeds = [ChangeFeed() for _ in range(max(1, watchers))]
        self._threads: list[threading.Thread] = []
        for number, feed in enumerate(self._feeds):
            thread = threading.Thread(
                target=self._watch,
                args=(feed, number == 0),
                name=f"virtjobd-watch-{number + 1}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Set the event loop that channels live on (None detaches it, at shutdown)."""
        self._loop = loop

    def close(self, timeout: float = 5.0) -> None:
        """Stop the watcher threads (waiting up to `timeout` seconds for them)."""
        for feed in self._feeds:
            feed.close()
        deadline = time.monotonic() + timeout
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join(max(0.0, deadline - time.monotonic()))

    # -- start-up -----------------------------------------------------------------------------

    def recover(self) -> list[JobDocument]:
        """Fail the jobs a dead daemon left unfinished (`interrupted`: their stored documents
        are rewritten) and remove their partial files. Returns their documents as they were.
        """
        now = time.time()
        documents = self._store.interrupt_unfinished(
            lambda document: interrupted(document, now), now
        )
        for document in documents:
            log.warning(
                "job %s (%s of %r on %s) was %s when the daemon stopped: marked failed",
                document.id,
                document.kind,
                document.subject,
                document.host,
                document.info.state,
            )
            if document.target:
                remove_stale_partials(document.target)
        with self._lock:
            self._finals = self._store.count_final()
        return documents

    # -- tracking -----------------------------------------------------------------------------

    def track(self, job: Job, host: str) -> Tracked:
        """Record a job the host `host` (its URI) has just accepted, and follow it.

        Creates no thread. Raises `OperationFailedError` if the job cannot be recorded: it is
        then cancelled at once (a queued job never starts; call this inside
        `hold_new_jobs` so that it is still queued), so no job runs unrecorded. The job's
        document must name `host` (its job driver's ``host``), else the job is cancelled the
        same way: a job listed under another host would be lost to its clients.
        """
        document = job.document()
        tracked = Tracked(job, document.info)
        with self._lock:
            self._live[job.id] = tracked
        try:
            if document.host != host:
                raise InternalError(
                    f"its document names host {document.host!r}, not {host!r}; this is a bug"
                    f" of the driver (its job driver's host)"
                )
            self._store.insert_job(document)
            self._follow(tracked)
            job.add_done_callback(lambda _job: self._finished(tracked))  # last: may prune it
        except VirtError as exc:
            with self._lock:
                self._live.pop(job.id, None)
            with contextlib.suppress(VirtError):
                job.cancel()
            log.error(
                "job %s (%s of %r) cancelled: recording it failed: %s",
                job.id,
                job.kind,
                job.subject,
                exc,
            )
            raise OperationFailedError(
                f"job {job.id} ({job.kind} of {job.subject!r}) was cancelled: virtjobd could"
                f" not record it ({exc}); see the daemon's log, then start it again"
            ) from exc
        log.debug("job %s (%s of %r on %s): tracked", job.id, job.kind, job.subject, host)
        return tracked

    def _follow(self, tracked: Tracked) -> None:
        """Have one of the watcher threads follow the job; `InternalError` if it cannot be."""
        job = tracked.job
        driver = job.driver
        if not isinstance(driver, LocalJobDriver):  # every driver virtjobd hosts runs its jobs so
            raise InternalError(
                f"job {job.id} ({job.kind} of {job.subject!r}) runs on {driver!r}, which"
                f" virtjobd cannot follow; it follows only jobs run in its own process"
            )
        driver.job_follow(job.id, self._feeds[hash(job.id) % len(self._feeds)])

    def _watch(self, feed: ChangeFeed, first: bool) -> None:
        """One watcher thread: follow the jobs that mark `feed` (the first one also does the
        chores: lapsed holds, and releasing the engine records of pruned jobs)."""
        unsaved: dict[str, Tracked] = {}  # progress not stored yet (throttled)
        next_check = time.monotonic() + HOLD_CHECK
        while not feed.closed:
            timeout = SNAPSHOT_EVERY
            if unsaved:
                due = min(t.stored_at for t in unsaved.values()) + SNAPSHOT_EVERY
                timeout = min(timeout, max(0.0, due - time.monotonic()))
            changed = feed.take(timeout)
            for job_id in changed:
                tracked = self._live.get(job_id)
                if tracked is not None:
                    self._observe_safely(tracked, unsaved)
            now = time.monotonic()
            for tracked in list(unsaved.values()):
                if now - tracked.stored_at >= SNAPSHOT_EVERY:
                    self._observe_safely(tracked, unsaved)
            if first:
                if now >= next_check:
                    next_check = now + HOLD_CHECK
                    try:
                        self._lapse_holds()
                    except Exception:  # a store error must not stop the watcher
                        log.exception("letting lapsed holds go failed; tried again later")
                self._release_doomed()

    def _observe_safely(self, tracked: Tracked, unsaved: dict[str, Tracked]) -> None:
        """`_observe`, logging (not raising) a failure: one job's store error must not cost
        the others taken from the same feed their update."""
        try:
            self._observe(tracked, unsaved)
        except Exception:
            log.exception("following job %s failed; the watcher goes on", tracked.job.id)

    def _observe(self, tracked: Tracked, unsaved: dict[str, Tracked]) -> None:
        """Hand the job's latest info to its channel and store it (throttled)."""
        job = tracked.job
        try:
            info = job.info()
        except NoJobError:
            unsaved.pop(job.id, None)
            return
        if info.state.terminal:  # the done callback records the final state, then posts it
            unsaved.pop(job.id, None)
            return
        self._post(tracked.channel, info)
        now = time.monotonic()
        key = (info.state, info.bounded)
        if key != tracked.stored or now - tracked.stored_at >= SNAPSHOT_EVERY:
            unsaved.pop(job.id, None)
            try:
                document = job.document()
            except NoJobError:
                return  # destroyed this instant
            if document.info.state.terminal:
                return  # ended this instant: the done callback records it
            tracked.stored, tracked.stored_at = key, now
            self._store.update_progress(document)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("job %s: stored %s, %s%% done", job.id, info.state, info.percent)
        else:
            unsaved[job.id] = tracked

    def _post(self, channel: Channel, info: JobInfo) -> None:
        loop = self._loop
        if loop is None:
            if not channel.info.state.terminal:
                channel.info = info  # no loop (tests, shutdown): nobody can be waiting
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(channel.publish, info)

    def _finished(self, tracked: Tracked) -> None:
        """Record the end of a job, apply the limit, and only then tell its waiters."""
        job = tracked.job
        try:
            document = job.document()
        except NoJobError:
            tracked.recorded = True
            return  # destroyed already
        with self._lock:
            tracked.ended = True
            tracked.ended_at = time.monotonic()
            self._held.add(job.id)  # until someone has seen the end (or the hold lapses)
        log.debug("job %s: held (nobody has been handed its end yet)", job.id)
        try:
            self._record_end(tracked, document)
        finally:
            tracked.recorded = True
            self._post(tracked.channel, document.info)

    def _record_end(self, tracked: Tracked, document: JobDocument) -> None:
        job = tracked.job
        try:
            self._store.finish_job(document)
            with self._lock:
                self._finals += 1
            log.debug("job %s: ended %s, recorded", job.id, document.info.state)
            self._release(tracked)
        except VirtError:
            log.exception("recording the end of job %s failed", job.id)

    # -- retention ----------------------------------------------------------------------------

    def _still_held(self, tracked: Tracked, now: float) -> bool:
        """Whether a finished job may still be waited for. The caller holds `_lock`."""
        if tracked.waiters:
            return True
        return not tracked.seen and now - tracked.ended_at < self._unseen_hold

    def _release(self, tracked: Tracked) -> None:
        """Let a finished job go if nobody holds it any more, then apply the limit."""
        with self._lock:
            if tracked.job.id in self._held and not self._still_held(tracked, time.monotonic()):
                self._held.discard(tracked.job.id)
                log.debug("job %s: let go (its end was seen, nobody waits)", tracked.job.id)
        self._prune()

    def _lapse_holds(self) -> None:
        now = time.monotonic()
        with self._lock:
            for job_id in list(self._held):
                tracked = self._live.get(job_id)
                if tracked is None or not self._still_held(tracked, now):
                    self._held.discard(job_id)
                    log.debug("job %s: let go (its hold lapsed)", job_id)
        self._prune()

    def _prune(self) -> None:
        """Drop the oldest finished jobs nobody holds beyond the `retain` newest."""
        with self._lock:
            if self._finals - len(self._held) <= self._retain:
                return
            exempt = set(self._held)
        try:
            ids = self._store.prune(self._retain, exempt)
        except VirtError:
            log.exception("applying the retention limit failed")
            return
        with self._lock:
            self._finals -= len(ids)
        if ids:
            log.debug("retention limit %d: pruned job(s) %s", self._retain, ", ".join(ids))
        self._forget(ids)

    def _forget(self, ids: Iterable[str]) -> None:
        """Drop pruned jobs from the daemon's view now; have the first watcher thread release
        their engine records (`Job.destroy` waits for a job's done callbacks: a done callback
        or the event loop, where pruning happens, must never wait for another job's)."""
        with self._lock:
            for job_id in ids:
                tracked = self._live.pop(job_id, None)
                if tracked is not None:
                    self._doomed.append(tracked.job)
            if not self._doomed:
                return
        self._feeds[0].wake()

    def _release_doomed(self) -> None:
        """Release the engine records of pruned jobs (on the first watcher thread)."""
        with self._lock:
            doomed, self._doomed = self._doomed, []
        for job in doomed:
            try:
                job.destroy()
            except NoJobError:
                pass  # destroyed already
            except Exception:
                log.exception("releasing pruned job %s failed", job.id)

    def _enter(self, tracked: Tracked) -> None:
        with self._lock:
            tracked.waiters += 1

    def _leave(self, tracked: Tracked, *, seen: bool = False) -> None:
        with self._lock:
            tracked.waiters -= 1
            tracked.seen = tracked.seen or seen
            ended = tracked.ended
        if ended:
            self._release(tracked)

    # -- serving ------------------------------------------------------------------------------

    def get(self, job_id: str) -> Tracked | None:
        """The live job `job_id`, or None (it may still be a stored one)."""
        return self._live.get(job_id)

    def document(self, job_id: str) -> JobDocument:
        """The document of job `job_id`, live or stored; `NoJobError` if there is none."""
        tracked = self._live.get(job_id)
        if tracked is not None:
            try:
                return tracked.job.document()
            except NoJobError:
                pass  # destroyed or pruned this instant; the store may still have it
        document = self._store.get_job(job_id)
        if document is None:
            raise _no_job(job_id)
        return document

    async def wait(self, job_id: str, timeout: float) -> JobDocument:
        """Long poll: the job as soon as it is final, or after `timeout` seconds.

        Holds the job meanwhile; an answer that shows its end lets it go (the retention limit
        may then drop it). `NoJobError` if there is no such job.
        """
        tracked = self._live.get(job_id)
        if tracked is None:
            return self.document(job_id)
        self._enter(tracked)
        seen = False
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            channel = tracked.channel
            while not channel.info.state.terminal:
                left = deadline - loop.time()
                if left <= 0 or tracked.recorded:
                    break
                await channel.changed(channel.version, min(left, RECHECK))
            document = self.document(job_id)
            seen = document.info.state.terminal
            return document
        finally:
            self._leave(tracked, seen=seen)

    async def following(
        self, tracked: Tracked, events: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        """`events` (a job's event stream), holding the job while the stream is open."""
        self._enter(tracked)
        try:
            async for event in events:
                yield event
        finally:
            self._leave(tracked)

    def documents(self, host: str | None) -> list[JobDocument]:
        """Every job (of `host`, when given), oldest first."""
        out: list[JobDocument] = []
        for stored in self._store.list_jobs(host):
            tracked = self._live.get(stored.id)
            if tracked is not None:
                with contextlib.suppress(NoJobError):
                    out.append(tracked.job.document())
                    continue
            out.append(stored)
        return out

    def cancel(self, job_id: str) -> JobDocument:
        """Ask job `job_id` to stop (a no-op once final); return it. `NoJobError` if unknown."""
        tracked = self._live.get(job_id)
        if tracked is not None:
            with contextlib.suppress(NoJobError):
                tracked.job.cancel()
                log.debug("job %s: cancel requested by a client", job_id)
        return self.document(job_id)

    def destroy(self, job_id: str) -> None:
        """Forget a final job; `OperationInvalidError` while it runs, `NoJobError` if unknown."""
        tracked = self._live.get(job_id)
        if tracked is not None:
            with contextlib.suppress(NoJobError):
                tracked.job.destroy()  # OperationInvalidError while it runs
            with self._lock:
                self._live.pop(job_id, None)
                self._held.discard(job_id)
        if self._store.delete_job(job_id):
            with self._lock:
                self._finals -= 1
        elif tracked is None:
            raise _no_job(job_id)
        log.debug("job %s: destroyed by a client", job_id)

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
        return late
