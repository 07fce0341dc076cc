"""Job commands: job-list, job-info, job-cancel, job-wait, job-destroy, and the job of one
domain: domjobinfo, domjobabort."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import click

from virtjob.cli.completion import complete_job
from virtjob.cli.context import App, json_option, non_empty, pass_app
from virtjob.cli.domains import DOMAIN
from virtjob.cli.jobrun import conclude, follow
from virtjob.cli.output import (
    CliError,
    ExitCode,
    document_json,
    echo_fields,
    echo_json,
    echo_table,
    format_bytes,
    format_duration,
    format_percent,
    job_json,
    yes_no,
)
from virtjob.cli.progress import make_display
from virtjob.errors import NoJobError
from virtjob.job import Job
from virtjob.jobs import JobInfo, JobState

if TYPE_CHECKING:
    from virtjob.api.document import JobDocument

JOB_ID = click.argument(
    "job_id", metavar="ID", callback=non_empty("job-list"), shell_complete=complete_job
)


def _lookup(app: App, job_id: str) -> Job:
    """The job `job_id`; on an in-process host, a miss also says where jobs live."""
    try:
        return app.conn.lookup_job(job_id)
    except NoJobError as exc:
        if not app.in_process:
            raise
        raise CliError(
            f"{exc.message}; an in-process host ({app.uri}) keeps no jobs between commands:"
            f" jobs started with --bg or by another command live in a daemon; use its URI,"
            f" e.g. -c {app.daemon_uri()}",
            ExitCode.NOT_FOUND,
        ) from exc


def _what(job: Job) -> str:
    return f"{job.kind} of {job.subject!r}"


def _outcome(job: Job, info: JobInfo) -> str:
    """``domain 'test'``, the error, or ``-``: what the job produced."""
    if info.state is JobState.SUCCEEDED:
        made = job.domain() or job.network()
        if made is not None:
            return f"{'domain' if job.kind.yields_domain else 'network'} '{made.name}'"
        return "done"
    if info.state is JobState.FAILED:
        error = job.error()
        return f"{error.code}: {error.message}" if error is not None else "failed"
    return "-"


@click.command("job-list")
@json_option()
@pass_app
def job_list(app: App, as_json: bool) -> None:
    """List the host's jobs (not yet destroyed), oldest first.

    \b
    Example:
      virtjob -c 'test+unix:///default?socket=/tmp/vj.sock' job-list
    """
    documents = _documents(app.conn.list_jobs())
    if as_json:
        echo_json([document_json(document) for document in documents])
        return
    rows = [
        (
            document.id,
            str(document.kind),
            document.subject,
            str(document.info.state),
            format_percent(document.info.percent),
            format_duration(document.info.elapsed),
        )
        for document in documents
    ]
    echo_table(("Id", "Kind", "Subject", "State", "Progress", "Elapsed"), rows)


def _documents(jobs: Iterable[Job[object]]) -> list[JobDocument]:
    """The document of each of `jobs`, leaving out those destroyed (or pruned by the daemon)
    since they were listed: a job gone meanwhile is no longer one of the host's jobs."""
    out: list[JobDocument] = []
    for job in jobs:
        try:
            out.append(job.document())
        except NoJobError:
            continue
    return out


@click.command("job-info")
@JOB_ID
@json_option()
@pass_app
def job_info(app: App, job_id: str, as_json: bool) -> None:
    """Show a job's state, progress, result or error (exit 0 whatever its state).

    \b
    Example:
      virtjob job-info 0709b89a8e31 --json
    """
    _show(_lookup(app, job_id), as_json)


def _show(job: Job, as_json: bool) -> None:
    """Print `job`'s state, progress and outcome (``job-info``, ``domjobinfo``)."""
    if as_json:
        echo_json(job_json(job))
        return
    info = job.info()
    processed = "-"
    if info.processed is not None:
        processed = format_bytes(info.processed)
        if info.total is not None:
            processed += f" of {format_bytes(info.total)}"
    echo_fields(
        [
            ("Id", job.id),
            ("Kind", str(job.kind)),
            ("Subject", job.subject),
            ("State", str(info.state)),
            ("Progress", format_percent(info.percent)),
            ("Processed", processed),
            ("Elapsed", format_duration(info.elapsed)),
            ("Remaining", format_duration(info.remaining)),
            ("Cancel requested", yes_no(info.cancel_requested)),
            ("Outcome", _outcome(job, info)),
        ]
    )


@click.command("job-cancel")
@JOB_ID
@pass_app
def job_cancel(app: App, job_id: str) -> None:
    """Ask a job to stop and return at once (it may still succeed); see job-wait.

    \b
    Example:
      virtjob job-cancel 0709b89a8e31 && virtjob job-wait 0709b89a8e31
    """
    _cancel(_lookup(app, job_id))


def _cancel(job: Job) -> None:
    """Ask `job` to stop and say how that went (``job-cancel``, ``domjobabort``)."""
    before = job.info().state
    if before.terminal:
        click.echo(f"Job {job.id} ({_what(job)}) had already ended ({before}); nothing to cancel")
        return
    job.cancel()
    state = job.info().state
    if state is JobState.CANCELLED:
        click.echo(f"Job {job.id} ({_what(job)}) cancelled")
    elif state.terminal:
        click.echo(f"Job {job.id} ({_what(job)}) ended ({state}) before it could be cancelled")
    else:
        click.echo(
            f"Cancellation of job {job.id} ({_what(job)}) requested;"
            f" 'virtjob job-wait {job.id}' follows it to its end"
        )


@click.command("job-wait")
@JOB_ID
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Give up after SECONDS (exit 5); the job goes on.",
)
@click.option(
    "--no-cancel",
    is_flag=True,
    help="On Ctrl-C stop waiting but leave the job running (default: cancel it).",
)
@click.option("--destroy", is_flag=True, help="Release the job's record once it has ended.")
@json_option("Print the final job as JSON (see docs/cli.md) instead of progress and messages.")
@pass_app
def job_wait(
    app: App, job_id: str, timeout: float | None, no_cancel: bool, destroy: bool, as_json: bool
) -> None:
    """Follow a job to its end with progress; the exit code tells how it ended.

    Exit 0 if it succeeded, 1 if it failed, 3 if it was cancelled, 5 on --timeout.
    Ctrl-C cancels the job (unless --no-cancel); a second Ctrl-C stops waiting.

    \b
    Example:
      virtjob job-wait 0709b89a8e31 --timeout 60
    """
    job = _lookup(app, job_id)
    info = follow(app, job, make_display(job, quiet=as_json), timeout=timeout, cancel=not no_cancel)
    conclude(
        app,
        job,
        info,
        success=lambda j: f"Job {j.id} ({_what(j)}) succeeded: {_outcome(j, info)}",
        as_json=as_json,
        release=destroy,
    )


@click.command("job-destroy")
@JOB_ID
@pass_app
def job_destroy(app: App, job_id: str) -> None:
    """Release a finished job's record (refused while it runs).

    \b
    Example:
      virtjob job-destroy 0709b89a8e31
    """
    job = _lookup(app, job_id)
    job.destroy()
    click.echo(f"Job {job.id} ({_what(job)}) destroyed")


def _domain_job(app: App, domain: str) -> tuple[str, Job | None]:
    """The name of `domain` and the job queued or running on it, if any."""
    dom = app.conn.lookup_domain(domain)
    return dom.name, dom.job()


@click.command()
@DOMAIN
@json_option("Print the job as JSON (see docs/cli.md), or null when there is none.")
@pass_app
def domjobinfo(app: App, domain: str, as_json: bool) -> None:
    """Show the job at work on a domain (as job-info does), or say it has none; read-only.

    \b
    Example:
      virtjob domjobinfo test
    """
    name, job = _domain_job(app, domain)
    if job is not None:
        _show(job, as_json)
    elif as_json:
        echo_json(None)
    else:
        click.echo(f"No job is running on domain '{name}'")


@click.command()
@DOMAIN
@pass_app
def domjobabort(app: App, domain: str) -> None:
    """Cancel the job at work on a domain (as job-cancel does); fails if it has none.

    \b
    Example:
      virtjob domjobabort test
    """
    name, job = _domain_job(app, domain)
    if job is None:
        raise CliError(f"no job is running on domain '{name}'; nothing to abort")
    _cancel(job)


COMMANDS = [job_list, job_info, job_cancel, job_wait, job_destroy, domjobinfo, domjobabort]
