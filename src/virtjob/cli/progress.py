"""Showing a job's progress: a live rich bar on a terminal, plain lines in a pipe, or nothing.

Every display is fed the `JobInfo` snapshots of `Job.watch()`; `Follower` runs that iterator in
a thread so the main thread stays free to time out and to take Ctrl-C. The rich bar lives in
`virtjob.cli.livebar`, imported only when a terminal shows it: rich costs more to import than
most commands take to run.
"""

from __future__ import annotations

import errno
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

import click

from virtjob.cli.output import format_bytes, format_duration, format_percent
from virtjob.jobs import Job, JobInfo, JobState

PLAIN_INTERVAL = 1.0
RATE_WINDOW = 3.0


def stdout_gone(exc: OSError) -> bool:
    """True when `exc` says the reader of our output went away (a closed pipe, a hung-up tty)."""
    return exc.errno in (errno.EPIPE, errno.EIO)


def silence_stdout() -> None:
    """Send whatever is still written to stdout to /dev/null (its reader has gone)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


class Follower:
    """Runs ``job.watch()`` in a daemon thread and hands its snapshots over through a queue.

    `final` is the job's final snapshot as soon as the watching thread has seen it, whatever
    the main thread has taken from the queue; `on_final` is called (in that thread) then.
    """

    def __init__(
        self,
        job: Job,
        interval: float = 0.1,
        on_final: Callable[[], None] | None = None,
    ) -> None:
        self._job = job
        self._interval = interval
        self._on_final = on_final
        self.final: JobInfo | None = None
        # SimpleQueue.get is C code: a signal handler raising while it blocks leaks no lock.
        self._queue: queue.SimpleQueue[JobInfo | BaseException] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"watch-{job.id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for info in self._job.watch(self._interval):
                if info.state.terminal:
                    self.final = info
                    if self._on_final is not None:
                        self._on_final()
                self._queue.put(info)
        except BaseException as exc:  # handed to the main thread, which raises it
            self._queue.put(exc)

    def get(self, timeout: float | None) -> JobInfo | None:
        """Return the next snapshot, or None after `timeout` seconds; re-raise a watch error.

        Once the queue is drained and the job has ended, returns the final snapshot (again):
        a signal may have interrupted the main thread just after it took that one.
        """
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return self.final
        if isinstance(item, BaseException):
            raise item
        return item


class RateMeter:
    """Bytes per second over the last few seconds of snapshots (the whole run once final)."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, info: JobInfo) -> None:
        """Record a snapshot."""
        if info.processed is None:
            return
        self._samples.append((info.elapsed, info.processed))
        while len(self._samples) > 2 and info.elapsed - self._samples[1][0] >= RATE_WINDOW:
            self._samples.popleft()

    def rate(self, info: JobInfo) -> float | None:
        """Return the current rate in bytes per second, None when unknown."""
        if info.state.terminal:
            if info.processed and info.elapsed > 0:
                return info.processed / info.elapsed
            return None
        if len(self._samples) < 2:
            return None
        (t0, p0), (t1, p1) = self._samples[0], self._samples[-1]
        return (p1 - p0) / (t1 - t0) if t1 > t0 else None


class Display(Protocol):
    """Where a followed job's progress goes."""

    def __enter__(self) -> Display: ...

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def update(self, info: JobInfo) -> None:
        """Show a new snapshot."""
        ...

    def note(self, text: str) -> None:
        """Show a message about the job (e.g. that it is being cancelled)."""
        ...


def describe(job: Job) -> str:
    """``domain-save test``: what the job does, in a few words."""
    return f"{job.kind} {job.subject}"


def progress_line(job: Job, info: JobInfo, rate: float | None) -> str:
    """One plain line: ``job ID KIND SUBJECT: STATE PERCENT BYTES RATE elapsed ETA``."""
    parts = [f"job {job.id} {describe(job)}: {info.state}"]
    if info.cancel_requested and not info.state.terminal:
        parts.append("(cancelling)")
    if info.percent is not None:
        parts.append(format_percent(info.percent))
    if info.processed is not None:
        total = f"/{format_bytes(info.total)}" if info.total is not None else ""
        parts.append(f"{format_bytes(info.processed)}{total}")
    if rate is not None:
        parts.append(f"{format_bytes(rate)}/s")
    parts.append(f"elapsed {format_duration(info.elapsed)}")
    if not info.state.terminal:
        parts.append(f"ETA {format_duration(info.remaining)}")
    return " ".join(parts)


class PlainDisplay:
    """Plain lines on stdout: one per change of state, else at most one a second."""

    def __init__(self, job: Job) -> None:
        self._job = job
        self._meter = RateMeter()
        self._last_print: float | None = None
        self._last_state: JobState | None = None

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def update(self, info: JobInfo) -> None:
        """Print the snapshot if its state is new or a second has passed since the last line."""
        self._meter.add(info)
        now = time.monotonic()
        due = self._last_print is None or now - self._last_print >= PLAIN_INTERVAL
        if due or info.state is not self._last_state:
            click.echo(progress_line(self._job, info, self._meter.rate(info)))
            sys.stdout.flush()
            self._last_print = now
            self._last_state = info.state

    def note(self, text: str) -> None:
        """Print the message on stderr."""
        click.echo(text, err=True)


class NullDisplay:
    """Shows nothing (``--json``: stdout carries only the JSON document)."""

    def __enter__(self) -> NullDisplay:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def update(self, info: JobInfo) -> None:
        """Ignore the snapshot."""

    def note(self, text: str) -> None:
        """Print the message on stderr."""
        click.echo(text, err=True)


def interactive() -> bool:
    """True when stdout is a terminal that can show a live bar."""
    return sys.stdout.isatty() and os.environ.get("TERM", "") != "dumb"


def make_display(job: Job, *, quiet: bool) -> Display:
    """Pick the display: none when `quiet`, the rich bar on a terminal, else plain lines."""
    if quiet:
        return NullDisplay()
    if interactive():
        from virtjob.cli.livebar import RichDisplay  # rich, only on a terminal

        return RichDisplay(job)
    return PlainDisplay(job)
