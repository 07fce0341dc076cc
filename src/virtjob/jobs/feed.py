"""`ChangeFeed`: one thread follows many jobs, instead of one thread per job in `Job.watch`.

`LocalJobDriver.job_follow(job_id, feed)` makes a job mark its id on the feed at once and then
on every change (progress, state, cancel request); the consumer calls `take` to learn which
jobs changed and reads their info itself. Ids are coalesced: a job marked several times
before a `take` comes out once, so a consumer that falls behind sees the latest state, never
a backlog. `mark` runs under the job's lock and takes only the feed's own lock, which is never
held while a job's lock is taken: nothing here calls out to other code.
"""

from __future__ import annotations

import threading


class ChangeFeed:
    """Ids of followed jobs that changed since the consumer last looked. Thread-safe."""

    __slots__ = ("_closed", "_cond", "_marked", "_woken")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._marked: dict[str, None] = {}
        self._closed = False
        self._woken = False

    def mark(self, job_id: str) -> None:
        """Note that job `job_id` changed (a no-op if it is noted already) and wake the consumer."""
        with self._cond:
            if job_id not in self._marked:
                self._marked[job_id] = None
                if len(self._marked) == 1:
                    self._cond.notify_all()

    def take(self, timeout: float | None) -> list[str]:
        """Return and clear the ids marked so far, in the order first marked.

        Waits up to `timeout` seconds (None: no limit) for one if there is none, unless the
        feed is closed or `wake` was called since the last `take`; returns an empty list when
        the timeout passes first or a `wake` or `close` ends the wait with nothing marked.
        Once closed it no longer waits, but still hands out what was marked.
        """
        with self._cond:
            if not self._marked and not self._closed and not self._woken:
                self._cond.wait(timeout)
            marked, self._marked = self._marked, {}
            self._woken = False
        return list(marked)

    def wake(self) -> None:
        """End the consumer's current (or next) wait in `take` even if nothing is marked.

        Lets another thread hand the consumer a chore of its own (virtjobd's pruning).
        """
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._closed

    def close(self) -> None:
        """Wake the consumer for good: `take` no longer waits."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
