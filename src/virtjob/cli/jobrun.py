"""Running a long command: return at once (``--bg``) or follow the job to its end and report.

While following, Ctrl-C (SIGINT), SIGTERM and SIGHUP cancel the job, wait for it to stop and
say so; a second one stops waiting and leaves the job to itself. Once the job has ended they
are ignored, so that what the command reports and its exit code stay those of the job. When
stdout's reader goes away (``virtjob save … | head -1``), the progress stops but the job is
followed to its end all the same.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import click

from virtjob.cli.context import App
from virtjob.cli.output import CliError, ExitCode, echo_json, exit_code_for, job_json
from virtjob.cli.progress import Display, Follower, make_display, silence_stdout, stdout_gone
from virtjob.cli.signals import SIGNALS, label_of
from virtjob.errors import NoDomainError, NoJobError, NoNetworkError, VirtError
from virtjob.jobs import Job, JobInfo, JobKind, JobState

log = logging.getLogger("virtjob.cli")
J = TypeVar("J", bound=Job)
"""A job handle of any type: the one a command started, handed back to its messages."""

_DOMAIN_SUBJECT = frozenset(
    {JobKind.DOMAIN_CREATE, JobKind.DOMAIN_START, JobKind.DOMAIN_SAVE, JobKind.DOMAIN_DUMP_CORE}
)
_NETWORK_SUBJECT = frozenset({JobKind.NETWORK_CREATE, JobKind.NETWORK_START})
WAKE = 0.2


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
    log.debug("following job %s (%s of %r), timeout %s", job.id, job.kind, job.subject, timeout)
    SIGNALS.arm()
    try:
        pump = _Pump(Follower(job, on_final=SIGNALS.disarm), display)
        info = _follow(app, job, pump, deadline, timeout, cancel)
    finally:
        SIGNALS.ignore()
    log.debug("job %s ended %s after %.3f s", job.id, info.state, info.elapsed)
    return info


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
                    raise _detached(app, job) from exc  # which signal it was
                signame = label_of(exc)
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
            except KeyboardInterrupt as exc:
                if pump.follower.final is not None:
                    return _finish(pump)
                raise _detached(app, job) from exc
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
    job: J,
    info: JobInfo,
    *,
    success: Callable[[J], str] | None,
    as_json: bool,
    release: bool,
    cancelled_note: str | None = None,
) -> None:
    """Report how `job` ended, release its record if asked, and exit with the matching code.

    Success prints `success(job)` (or the job's JSON); failure prints the job's error;
    cancellation says so and what state the domain or network is left in.
    """
    document = job_json(job) if as_json else None  # taken before a release forgets it
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
    start: Callable[[], J],
    *,
    background: bool,
    as_json: bool,
    success: Callable[[J], str],
    cancelled_note: str | None = None,
) -> None:
    """Start a job; with `background` print its id (or JSON) and return, else follow it.

    A followed job's record is released once it ends, like the synchronous API does.
    """
    if background:
        app.require_daemon("--bg")
    job = start()
    log.debug("started job %s (%s of %r)", job.id, job.kind, job.subject)
    if background:
        if as_json:
            echo_json(job_json(job))
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
