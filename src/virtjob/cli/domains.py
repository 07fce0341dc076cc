"""Domain commands: list, dominfo, domstate, dumpxml, define, undefine, create, start, destroy,
suspend, resume, shutdown, save, restore, dump.

The commands that start a job import `virtjob.cli.jobrun` (the progress display, the signal
handling) when they run: ``list`` and ``dominfo`` do not load it.
"""

from __future__ import annotations

import math
import time

import click

from virtjob.cli.completion import complete_domain
from virtjob.cli.context import (
    App,
    bg_option,
    exclusive_options,
    json_option,
    non_empty,
    non_empty_path,
    pass_app,
    read_xml,
    xml_errors,
)
from virtjob.cli.output import (
    domain_json,
    echo_fields,
    echo_json,
    echo_table,
    format_bytes,
    yes_no,
)
from virtjob.domain import MAX_FORCE_AFTER, Domain, DomainInfo
from virtjob.errors import NoDomainError, OperationFailedError
from virtjob.job import Job
from virtjob.jobs import JobKind

DOMAIN = click.argument("domain", callback=non_empty("list --all"), shell_complete=complete_domain)
XML_FILE = click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
TARGET = click.argument("file", type=click.Path(dir_okay=False), callback=non_empty_path)


def _sorted(infos: list[DomainInfo]) -> list[DomainInfo]:
    """Running domains by id first, then the others by name (like virsh)."""
    return sorted(infos, key=lambda i: (i.id is None, i.id or 0, i.name))


def _domain_of(job: Job) -> Domain:
    """The domain a succeeded create or restore job made."""
    made = job.domain()
    assert made is not None  # the job succeeded (its success message is being written)
    return made


@click.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also list domains that are not running.")
@click.option(
    "--inactive", is_flag=True, help="List only domains that are not running (not with --all)."
)
@click.option(
    "--name",
    "names_only",
    is_flag=True,
    help="Print only the names, one a line (with --json: a JSON array of names).",
)
@json_option()
@pass_app
def list_domains(app: App, show_all: bool, inactive: bool, names_only: bool, as_json: bool) -> None:
    """List domains: the running (and paused) ones, or all with --all.

    \b
    Examples:
      virtjob list --all
      virtjob list --json | jq -r '.[].name'
    """
    exclusive_options(all=show_all, inactive=inactive)
    infos = _sorted([dom.info() for dom in app.conn.list_domains()])
    if inactive:
        infos = [i for i in infos if not i.state.active]
    elif not show_all:
        infos = [i for i in infos if i.state.active]
    if as_json and names_only:
        echo_json([i.name for i in infos])
    elif as_json:
        echo_json([domain_json(i) for i in infos])
    elif names_only:
        for info in infos:
            click.echo(info.name)
    else:
        rows = [("-" if i.id is None else str(i.id), i.name, str(i.state)) for i in infos]
        echo_table(("Id", "Name", "State"), rows)


@click.command()
@DOMAIN
@json_option()
@pass_app
def dominfo(app: App, domain: str, as_json: bool) -> None:
    """Show a domain's state, memory, vCPUs and persistence.

    \b
    Example:
      virtjob dominfo test
    """
    info = app.conn.lookup_domain(domain).info()
    if as_json:
        echo_json(domain_json(info))
        return
    echo_fields(
        [
            ("Id", "-" if info.id is None else str(info.id)),
            ("Name", info.name),
            ("UUID", str(info.uuid)),
            ("OS Type", info.os_type),
            ("State", str(info.state)),
            ("CPU(s)", str(info.vcpus)),
            ("Max memory", format_bytes(info.memory)),
            ("Used memory", format_bytes(info.current_memory)),
            ("Persistent", yes_no(info.persistent)),
        ]
    )


@click.command()
@DOMAIN
@pass_app
def dumpxml(app: App, domain: str) -> None:
    """Print a domain's XML document.

    \b
    Example:
      virtjob dumpxml test > test.xml
    """
    click.echo(app.conn.lookup_domain(domain).xml(), nl=False)


@click.command()
@XML_FILE
@pass_app
def define(app: App, file: str) -> None:
    """Define a persistent (shut-off) domain from an XML FILE ('-' reads stdin).

    \b
    Example:
      virtjob define web.xml && virtjob start web
    """
    source, xml = read_xml(file)
    with xml_errors(source):
        dom = app.conn.define_domain(xml)
    click.echo(f"Domain '{dom.name}' defined from {source}")


@click.command()
@DOMAIN
@pass_app
def undefine(app: App, domain: str) -> None:
    """Remove a domain's definition; a running domain goes on as a transient one.

    \b
    Example:
      virtjob undefine web
    """
    dom = app.conn.lookup_domain(domain)
    dom.undefine()
    click.echo(f"Domain '{dom.name}' has been undefined")


@click.command()
@XML_FILE
@bg_option
@json_option("Print the job as JSON (see docs/cli.md) instead of progress and messages.")
@pass_app
def create(app: App, file: str, background: bool, as_json: bool) -> None:
    """Create and boot a transient domain from an XML FILE ('-' reads stdin), with progress.

    \b
    Example:
      virtjob create web.xml
    """
    from virtjob.cli.jobrun import run_long

    app.require_lasting_guests("create")
    source, xml = read_xml(file)

    def start() -> Job:
        with xml_errors(source):
            return app.conn.create_domain_job(xml)

    run_long(
        app,
        start,
        background=background,
        as_json=as_json,
        success=lambda job: f"Domain '{_domain_of(job).name}' created from {source}",
    )


@click.command()
@DOMAIN
@bg_option
@json_option("Print the job as JSON (see docs/cli.md) instead of progress and messages.")
@pass_app
def start(app: App, domain: str, background: bool, as_json: bool) -> None:
    """Boot a defined, shut-off domain, with progress.

    \b
    Example:
      virtjob start web
    """
    from virtjob.cli.jobrun import run_long

    app.require_lasting_guests("start")
    dom = app.conn.lookup_domain(domain)
    run_long(
        app,
        dom.start_job,
        background=background,
        as_json=as_json,
        success=lambda _job: f"Domain '{dom.name}' started",
    )


def _immediate(name: str, verb: str, done: str, help_text: str) -> click.Command:
    """Build a command that runs `Domain.<verb>()` on DOMAIN and says `done`."""

    @click.command(name, help=help_text)
    @DOMAIN
    @pass_app
    def command(app: App, domain: str) -> None:
        dom = app.conn.lookup_domain(domain)
        getattr(dom, verb)()
        click.echo(f"Domain '{dom.name}' {done}")

    return command


destroy = _immediate(
    "destroy",
    "destroy",
    "destroyed",
    "Stop a running domain at once (power off).\n\n\b\nExample:\n  virtjob destroy test",
)
suspend = _immediate(
    "suspend",
    "suspend",
    "suspended",
    "Pause a running domain's vCPUs.\n\n\b\nExample:\n  virtjob suspend test",
)
resume = _immediate(
    "resume",
    "resume",
    "resumed",
    "Resume a paused domain.\n\n\b\nExample:\n  virtjob resume test",
)


def _seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Refuse NaN, which click's FloatRange lets through, as a usage error."""
    if value is not None and math.isnan(value):
        raise click.BadParameter(
            f"nan is not a number of seconds; give 0 to {MAX_FORCE_AFTER:g}", ctx, param
        )
    return value


@click.command()
@DOMAIN
@click.option(
    "--force-after",
    type=click.FloatRange(0, MAX_FORCE_AFTER),
    callback=_seconds,
    metavar="SECONDS",
    help="Wait up to SECONDS for the guest to power off; if it has not, power the domain off"
    " at once (as destroy does) and say so. Default: only ask, and return at once.",
)
@pass_app
def shutdown(app: App, domain: str, force_after: float | None) -> None:
    """Ask a running domain's guest to power off cleanly (ACPI power button).

    The guest may ignore the request (no OS, or one that is hung): the domain then goes on
    running. With --force-after SECONDS the host powers it off at once if it is still running
    by then; this command waits (a few seconds beyond SECONDS at most) and says how it ended.

    \b
    Examples:
      virtjob shutdown web
      virtjob shutdown web --force-after 60
    """
    dom = app.conn.lookup_domain(domain)
    if force_after is None:
        dom.shutdown()
        click.echo(f"Domain '{dom.name}' is being shutdown")
        return
    asked = time.monotonic()
    dom.shutdown(force_after=force_after)
    took = _wait_until_off(dom, asked + force_after + SHUTDOWN_MARGIN)
    if took is None:
        raise OperationFailedError(
            f"domain {dom.name!r} is still running {force_after + SHUTDOWN_MARGIN:g} s after the"
            f" shutdown request: it was not forced off (a job may have started on it; the"
            f" host's log says why); cancel the job, or destroy the domain"
        )
    if took - asked < force_after:
        click.echo(f"Domain '{dom.name}' has been shut down")
    else:
        click.echo(
            f"Domain '{dom.name}' did not power off within {force_after:g} s of the shutdown"
            f" request; it was forced off"
        )


SHUTDOWN_MARGIN = 5.0
"""Seconds ``shutdown --force-after S`` waits beyond S for the host to force the domain off."""
_STATE_POLL = 0.05


def _wait_until_off(dom: Domain, deadline: float) -> float | None:
    """Poll `dom` until it is no longer running (or gone: a transient one); the monotonic time
    it was first seen off, None if it still runs at `deadline`. No event says it: polling."""
    while True:
        try:
            active = dom.state().active
        except NoDomainError:
            active = False
        now = time.monotonic()
        if not active:
            return now
        if now >= deadline:
            return None
        time.sleep(min(_STATE_POLL, deadline - now))


# What a domain is doing while a job runs on it, in virsh's words (``domstate --reason``).
_JOB_REASONS = {
    JobKind.DOMAIN_CREATE: "starting up",
    JobKind.DOMAIN_START: "starting up",
    JobKind.DOMAIN_SAVE: "saving",
    JobKind.DOMAIN_RESTORE: "restoring",
    JobKind.DOMAIN_DUMP_CORE: "dumping",
}


@click.command()
@DOMAIN
@click.option("--reason", is_flag=True, help="Also say why it is in that state, when known.")
@json_option()
@pass_app
def domstate(app: App, domain: str, reason: bool, as_json: bool) -> None:
    """Print a domain's state (running, paused, shutoff...); read-only.

    With --reason, the state is followed by why, in parentheses: the job at work on the
    domain (saving, dumping, starting up, restoring), else why it came to its state in
    virsh's words (booted, restored, unpaused, user, destroyed, shutdown, saved) when the
    driver records it (the test driver does, the QEMU driver not yet), else "unknown".
    --json prints {"name", "state", "reason", "job"}.

    \b
    Examples:
      virtjob domstate test
      virtjob domstate test --reason
    """
    dom = app.conn.lookup_domain(domain)
    info = dom.info()
    state = info.state
    job = dom.job() if reason or as_json else None
    recorded = info.reason or "unknown"
    why = recorded if job is None else _JOB_REASONS.get(job.kind, str(job.kind))
    if as_json:
        echo_json(
            {
                "name": dom.name,
                "state": str(state),
                "reason": why,
                "job": None if job is None else job.id,
            }
        )
    else:
        click.echo(f"{state} ({why})" if reason else str(state))


@click.command()
@DOMAIN
@TARGET
@bg_option
@json_option("Print the job as JSON (see docs/cli.md) instead of progress and messages.")
@pass_app
def save(app: App, domain: str, file: str, background: bool, as_json: bool) -> None:
    """Save a running domain's memory to FILE and stop it, with progress.

    Ctrl-C cancels the save: the domain keeps running and no file is left at FILE.

    \b
    Examples:
      virtjob save test /var/tmp/test.save
      virtjob -c 'test+unix:///default?socket=/tmp/vj.sock' save --bg test /var/tmp/t.save
    """
    from virtjob.cli.jobrun import run_long

    path = app.file_path(file)  # refused before anything is sent
    dom = app.conn.lookup_domain(domain)
    run_long(
        app,
        lambda: dom.save_job(path),
        background=background,
        as_json=as_json,
        success=lambda _job: f"Domain '{dom.name}' saved to {path}",
        cancelled_note=f"no save file was written at {path}",
    )


@click.command()
@TARGET
@bg_option
@json_option("Print the job as JSON (see docs/cli.md) instead of progress and messages.")
@pass_app
def restore(app: App, file: str, background: bool, as_json: bool) -> None:
    """Restore a domain from a save FILE and run it again, with progress.

    The domain must not exist or be shut off: on an in-process URI such as test:///default,
    where 'test' runs in every fresh process, save and restore in one daemon instead.

    \b
    Example (with virtjobd running, see docs/daemon.md):
      export VIRTJOB_DEFAULT_URI='test+unix:///default?socket=/tmp/vj.sock'
      virtjob save test /var/tmp/test.save && virtjob restore /var/tmp/test.save
    """
    from virtjob.cli.jobrun import run_long

    app.require_lasting_guests("restore")
    path = app.file_path(file)
    run_long(
        app,
        lambda: app.conn.restore_job(path),
        background=background,
        as_json=as_json,
        success=lambda job: f"Domain '{_domain_of(job).name}' restored from {path}",
    )


@click.command()
@DOMAIN
@TARGET
@bg_option
@json_option("Print the job as JSON (see docs/cli.md) instead of progress and messages.")
@pass_app
def dump(app: App, domain: str, file: str, background: bool, as_json: bool) -> None:
    """Write a domain's memory to a core FILE; the domain keeps its state. With progress.

    \b
    Example:
      virtjob dump test /var/tmp/test.core
    """
    from virtjob.cli.jobrun import run_long

    path = app.file_path(file)  # refused before anything is sent
    dom = app.conn.lookup_domain(domain)
    run_long(
        app,
        lambda: dom.dump_core_job(path),
        background=background,
        as_json=as_json,
        success=lambda _job: f"Domain '{dom.name}' dumped to {path}",
        cancelled_note=f"no core file was written at {path}",
    )


COMMANDS = [
    list_domains,
    dominfo,
    domstate,
    dumpxml,
    define,
    undefine,
    create,
    start,
    destroy,
    suspend,
    resume,
    shutdown,
    save,
    restore,
    dump,
]
