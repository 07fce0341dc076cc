"""Running a long command: return at once (``--bg``) or follow the job to its end and report.

While following, Ctrl-C (SIGINT), SIGTERM and SIGHUP cancel the job, wait for it to stop and
say so; a second one stops waiting and leaves the job to itself. Once the job has ended they
are ignored, so that what the command reports and its exit code stay those of the job. When
stdout's reader goes away (``virtjob save … | head -1``), the progress stops but the job is
followed to its end all the same.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

import click

from virtjob.cli.context import App
from virtjob.cli.output import CliError, ExitCode, echo_json, exit_code_for, job_json
from virtjob.cli.progress import Display, Follower, make_display, silence_stdout, stdout_gone
from virtjob.errors import NoDomainError, NoJobError, NoNetworkError, VirtError
from virtjob.jobs import Job, JobInfo, JobKind, JobState

_DOMAIN_SUBJECT = frozenset(
    {JobKind.DOMAIN_CREATE, JobKind.DOMAIN_START, JobKind.DOMAIN_SAVE, JobKind.DOMAIN_DUMP_CORE}
)
_NETWORK_SUBJECT = frozenset({JobKind.NETWORK_CREATE, JobKind.NETWORK_START})
WAKE = 0.2

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


class Interrupted(KeyboardInterrupt):
    """A signal that interrupts following a job: SIGINT (Ctrl-C), SIGTERM or SIGHUP."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def label(self) -> str:
        """``Ctrl-C``, ``SIGTERM`` or ``SIGHUP``."""
        return "Ctrl-C" if self.signum == signal.SIGINT else signal.Signals(self.signum).name


def _label(exc: KeyboardInterrupt) -> str:
    return exc.label if isinstance(exc, Interrupted) else "Ctrl-C"


class JobSignals:
    """The handlers of SIGINT, SIGTERM and SIGHUP while a command follows a job.

    `arm` installs them (in the main thread only, and not over a signal the process was
    started with ignored, as ``nohup`` or a background job does): each signal then raises
    `Interrupted` in the main thread, but only where that is safe: at once while it waits for
    the next snapshot in `wait` (a C-level queue), else at its next `wait` or `check`, so that
    the exception never lands inside a lock held by rich or the job driver.

    `disarm` (from any thread, the moment the job is seen to end) makes them ignore signals;
    `ignore` (from the main thread, once following is over) then sets them to SIG_IGN, which
    is how they stay until `restore` puts back the previous handlers. The ``virtjob`` process
    never restores them: it exits once it has reported the job, and SIG_IGN, unlike a Python
    handler, outlasts the interpreter's finalization.
    """

    NUMBERS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self._previous: dict[int, _Handler] = {}
        self._armed = False
        self._interruptible = False
        self._pending: list[int] = []

    def arm(self) -> None:
        """Make the signals raise `Interrupted` in the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self.NUMBERS:
            if signum in self._previous:
                continue
            previous = signal.getsignal(signum)
            if previous == signal.SIG_IGN:
                continue
            self._previous[signum] = previous
            signal.signal(signum, self._handle)
        self._pending.clear()
        self._armed = True

    def wait(self, follower: Follower, timeout: float) -> JobInfo | None:
        """`follower.get(timeout)`, during which a signal raises `Interrupted` at once."""
        self.check()
        self._interruptible = True
        try:
            return follower.get(timeout)
        finally:
            self._interruptible = False

    def check(self) -> None:
        """Raise `Interrupted` for a signal that came while the main thread was busy."""
        if self._armed and self._pending:
            raise Interrupted(self._pending.pop(0))

    def disarm(self) -> None:
        """Ignore the signals from now on (safe from any thread: it only flips a flag)."""
        self._armed = False

    def ignore(self) -> None:
        """Set the signals `arm` took over to SIG_IGN (main thread only)."""
        self._armed = False
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self._previous:
            signal.signal(signum, signal.SIG_IGN)

    def restore(self) -> None:
        """Put back the handlers `arm` replaced."""
        self._armed = False
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if not self._armed:
            return
        if self._interruptible:
            self._interruptible = False
            raise Interrupted(signum)
        self._pending.append(signum)


SIGNALS = JobSignals()


class _Pump:
    """Feeds a follower's snapshots to a display; stops showing them once stdout is gone."""

    def __init__(self, follower: Follower, display: Display) -> None:
        self.follower = follower
        self.display = display
        self.showing = True

    def run(self, deadline: float | None) -> JobInfo | None:
        """Show snapshots until the final one (returned) or the deadline (None).

        Wakes at least every `WAKE` seconds: a signal delivered to another thread only raises
        `Interrupted` here once this thread runs again (see `JobSignals`).
        """
        while True:
            timeout = WAKE if deadline is None else min(WAKE, deadline - time.monotonic())
            if timeout <= 0:
                return None
            info = SIGNALS.wait(self.follower, timeout)
            if info is None:
                continue
            if self.showing:
                try:
                    self.display.update(info)
                except OSError as exc:
                    if not stdout_gone(exc):
                        raise
                    self.stdout_gone()
            if info.state.terminal:
                return info

    def stdout_gone(self) -> None:
        """Stop showing progress; what is still written to stdout goes nowhere."""
        self.showing = False
        silence_stdout()

    def note(self, text: str) -> None:
        """Show `text` (on stderr, or above the bar), if anyone is still reading."""
        with contextlib.suppress(OSError):
            self.display.note(text)


def _detached(app: App, job: Job) -> CliError:
    if app.in_process:
        fate = f"in-process jobs end with this process, so job {job.id} is being stopped"
    else:
        fate = (
            f"job {job.id} may still be running; check it with"
            f" 'virtjob -c {app.uri} job-info {job.id}'"
        )
    return CliError(f"stopped waiting; {fate}", ExitCode.INTERRUPTED, label="interrupted")


def follow(
    app: App, job: Job, display: Display, *, timeout: float | None = None, cancel: bool = True
) -> JobInfo:
    """Show `job` on `display` until it ends; return its final info.

    Ctrl-C, SIGTERM or SIGHUP cancels the job (unless `cancel` is False) and keeps following
    it until it stops; a second one raises an `INTERRUPTED` error. Once the job has ended or
    following is over, those signals are ignored (see `JobSignals`). When `timeout` seconds
    pass first, raises a `TIMEOUT` error (the job goes on). A broken stdout stops the
    progress, not the following.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    SIGNALS.arm()
    try:
        pump = _Pump(Follower(job, on_final=SIGNALS.disarm), display)
        return _follow(app, job, pump, deadline, timeout, cancel)
    finally:
        SIGNALS.ignore()


def _finish(pump: _Pump) -> JobInfo:
    """Show the rest of the snapshots of a job that has ended; return the final one."""
    final = pump.run(None)
    assert final is not None
    return final


def _follow(
    app: App,
    job: Job,
    pump: _Pump,
    deadline: float | None,
    timeout: float | None,
    cancel: bool,
) -> JobInfo:
    try:
        with pump.display:
            try:
                info = pump.run(deadline)
            except KeyboardInterrupt as exc:
                if pump.follower.final is not None:  # came as the job ended: too late to matter
                    return _finish(pump)
                if not cancel:
                    raise _detached(app, job) from None
                signame = _label(exc)
            else:
                if info is None:
                    state = job.info().state
                    raise CliError(
                        f"job {job.id} is still {state} after {timeout:g} s; it goes on:"
                        f" wait again with 'virtjob job-wait {job.id}' or cancel it with"
                        f" 'virtjob job-cancel {job.id}'",
                        ExitCode.TIMEOUT,
                    )
                return info
            try:
                pump.note(
                    f"{signame}: cancelling job {job.id} ({job.kind} of {job.subject!r}) and"
                    f" waiting for it to stop; press Ctrl-C again to stop waiting"
                )
                job.cancel()
                final = pump.run(None)
            except KeyboardInterrupt:
                if pump.follower.final is not None:
                    return _finish(pump)
                raise _detached(app, job) from None
            assert final is not None
            return final
    except OSError as exc:  # the display's last refresh, on a terminal that hung up
        if not stdout_gone(exc) or pump.follower.final is None:
            raise
        silence_stdout()
        return pump.follower.final


def subject_state(app: App, job: Job) -> str | None:
    """Say what state the job's domain or network is in now, e.g. ``domain 'test' is running``."""
    try:
        if job.kind in _DOMAIN_SUBJECT:
            state = app.conn.lookup_domain(job.subject).state()
            return f"domain {job.subject!r} is {state}"
        if job.kind in _NETWORK_SUBJECT:
            active = app.conn.lookup_network(job.subject).is_active()
            return f"network {job.subject!r} is {'active' if active else 'inactive'}"
    except (NoDomainError, NoNetworkError):
        noun = "domain" if job.kind in _DOMAIN_SUBJECT else "network"
        return f"there is no {noun} {job.subject!r}"
    except VirtError:
        return None
    return None


def conclude(
    app: App,
    job: Job,
    info: JobInfo,
    *,
    success: Callable[[Job], str] | None,
    as_json: bool,
    release: bool,
    cancelled_note: str | None = None,
) -> None:
    """Report how `job` ended, release its record if asked, and exit with the matching code.

    Success prints `success(job)` (or the job's JSON); failure prints the job's error;
    cancellation says so and what state the domain or network is left in.
    """
    document = job_json(job, info) if as_json else None
    problem: CliError | None = None
    message = None
    if info.state is JobState.SUCCEEDED:
        message = success(job) if success is not None else None
    elif info.state is JobState.CANCELLED:
        parts = [f"job {job.id} ({job.kind} of {job.subject!r}) was cancelled"]
        if cancelled_note:
            parts.append(cancelled_note)
        state = subject_state(app, job)
        if state:
            parts.append(state)
        problem = CliError("; ".join(parts), ExitCode.CANCELLED, label="cancelled")
    else:
        error = job.error()
        text = error.message if error is not None else "the job failed without an error"
        code = exit_code_for(error) if error is not None else ExitCode.FAILED
        problem = CliError(f"job {job.id} ({job.kind} of {job.subject!r}) failed: {text}", code)
    if release:
        with contextlib.suppress(NoJobError):
            job.destroy()
    if document is not None:
        echo_json(document)
    elif message:
        click.echo(message)
    if problem is not None:
        raise problem


def run_long(
    app: App,
    start: Callable[[], Job],
    *,
    background: bool,
    as_json: bool,
    success: Callable[[Job], str],
    cancelled_note: str | None = None,
) -> None:
    """Start a job; with `background` print its id (or JSON) and return, else follow it.

    A followed job's record is released once it ends, like the synchronous API does.
    """
    if background:
        app.require_daemon("--bg")
    job = start()
    if background:
        if as_json:
            echo_json(job_json(job, job.info()))
        else:
            click.echo(job.id)
        return
    info = follow(app, job, make_display(job, quiet=as_json))
    conclude(
        app,
        job,
        info,
        success=success,
        as_json=as_json,
        release=True,
        cancelled_note=cancelled_note,
    )
