"""Running a long command: return at once (``--bg``) or follow the job to its end and report.

Ctrl-C while following cancels the job, waits for it to stop and says so; a second Ctrl-C
stops waiting and leaves the job to itself.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import click

from virtjob.cli.context import App
from virtjob.cli.output import CliError, ExitCode, echo_json, exit_code_for, job_json
from virtjob.cli.progress import Display, Follower, make_display
from virtjob.errors import NoDomainError, NoJobError, NoNetworkError, VirtError
from virtjob.jobs import Job, JobInfo, JobKind, JobState

_DOMAIN_SUBJECT = frozenset(
    {JobKind.DOMAIN_CREATE, JobKind.DOMAIN_START, JobKind.DOMAIN_SAVE, JobKind.DOMAIN_DUMP_CORE}
)
_NETWORK_SUBJECT = frozenset({JobKind.NETWORK_CREATE, JobKind.NETWORK_START})
WAKE = 0.2


def _pump(follower: Follower, display: Display, deadline: float | None) -> JobInfo | None:
    """Feed snapshots to `display` until the final one (returned) or the deadline (None).

    Wakes at least every `WAKE` seconds: a SIGINT delivered to another thread only raises
    KeyboardInterrupt here once this thread runs again.
    """
    while True:
        timeout = WAKE if deadline is None else min(WAKE, deadline - time.monotonic())
        if timeout <= 0:
            return None
        info = follower.get(timeout)
        if info is None:
            continue
        display.update(info)
        if info.state.terminal:
            return info


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

    Ctrl-C cancels the job (unless `cancel` is False) and keeps following it until it stops;
    a second Ctrl-C raises an `INTERRUPTED` error. When `timeout` seconds pass first, raises a
    `TIMEOUT` error (the job goes on).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    follower = Follower(job)
    with display:
        try:
            info = _pump(follower, display, deadline)
        except KeyboardInterrupt:
            if not cancel:
                raise _detached(app, job) from None
            info = None
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
            display.note(
                f"Ctrl-C: cancelling job {job.id} ({job.kind} of {job.subject!r}) and waiting"
                f" for it to stop; press Ctrl-C again to stop waiting"
            )
            job.cancel()
            final = _pump(follower, display, None)
        except KeyboardInterrupt:
            raise _detached(app, job) from None
    assert final is not None
    return final


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
