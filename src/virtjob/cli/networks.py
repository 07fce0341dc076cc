"""Network commands: net-list, net-info, net-dumpxml, net-define, net-undefine, net-create,
net-start, net-destroy.

The commands that start a job import `virtjob.cli.jobrun` when they run (see
`virtjob.cli.domains`).
"""

from __future__ import annotations

import click

from virtjob.cli.completion import complete_network
from virtjob.cli.context import (
    App,
    bg_option,
    exclusive_options,
    json_option,
    non_empty,
    pass_app,
    read_xml,
    xml_errors,
)
from virtjob.cli.output import echo_fields, echo_json, echo_table, network_json, yes_no
from virtjob.job import Job
from virtjob.network import Network, NetworkInfo

NETWORK = click.argument(
    "network", callback=non_empty("net-list --all"), shell_complete=complete_network
)
XML_FILE = click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
JOB_JSON_HELP = "Print the job as JSON (see docs/cli.md) instead of progress and messages."


def _state(info: NetworkInfo) -> str:
    return "active" if info.active else "inactive"


def _network_of(job: Job) -> Network:
    """The network a succeeded create job made."""
    made = job.network()
    assert made is not None  # the job succeeded (its success message is being written)
    return made


@click.command("net-list")
@click.option("--all", "show_all", is_flag=True, help="Also list inactive networks.")
@click.option("--inactive", is_flag=True, help="List only inactive networks (not with --all).")
@click.option(
    "--name",
    "names_only",
    is_flag=True,
    help="Print only the names, one a line (with --json: a JSON array of names).",
)
@json_option()
@pass_app
def net_list(app: App, show_all: bool, inactive: bool, names_only: bool, as_json: bool) -> None:
    """List networks: the active ones, or all with --all.

    \b
    Example:
      virtjob net-list --all
    """
    exclusive_options(all=show_all, inactive=inactive)
    infos = sorted((net.info() for net in app.conn.list_networks()), key=lambda i: i.name)
    if inactive:
        infos = [i for i in infos if not i.active]
    elif not show_all:
        infos = [i for i in infos if i.active]
    if as_json and names_only:
        echo_json([i.name for i in infos])
    elif as_json:
        echo_json([network_json(i) for i in infos])
    elif names_only:
        for info in infos:
            click.echo(info.name)
    else:
        rows = [
            (i.name, _state(i), yes_no(i.persistent), i.bridge or "-", i.forward_mode or "-")
            for i in infos
        ]
        echo_table(("Name", "State", "Persistent", "Bridge", "Forward"), rows)


@click.command("net-info")
@NETWORK
@json_option()
@pass_app
def net_info(app: App, network: str, as_json: bool) -> None:
    """Show a network's state, persistence, bridge and forward mode.

    \b
    Example:
      virtjob net-info default
    """
    info = app.conn.lookup_network(network).info()
    if as_json:
        echo_json(network_json(info))
        return
    echo_fields(
        [
            ("Name", info.name),
            ("UUID", str(info.uuid)),
            ("Active", yes_no(info.active)),
            ("Persistent", yes_no(info.persistent)),
            ("Bridge", info.bridge or "-"),
            ("Forward", info.forward_mode or "-"),
        ]
    )


@click.command("net-dumpxml")
@NETWORK
@pass_app
def net_dumpxml(app: App, network: str) -> None:
    """Print a network's XML document.

    \b
    Example:
      virtjob net-dumpxml default > default.xml
    """
    click.echo(app.conn.lookup_network(network).xml(), nl=False)


@click.command("net-define")
@XML_FILE
@pass_app
def net_define(app: App, file: str) -> None:
    """Define a persistent (inactive) network from an XML FILE ('-' reads stdin).

    \b
    Example:
      virtjob net-define lab.xml && virtjob net-start lab
    """
    source, xml = read_xml(file)
    with xml_errors(source):
        net = app.conn.define_network(xml)
    click.echo(f"Network '{net.name}' defined from {source}")


@click.command("net-undefine")
@NETWORK
@pass_app
def net_undefine(app: App, network: str) -> None:
    """Remove a network's definition; an active network goes on as a transient one.

    \b
    Example:
      virtjob net-undefine lab
    """
    net = app.conn.lookup_network(network)
    net.undefine()
    click.echo(f"Network '{net.name}' has been undefined")


@click.command("net-create")
@XML_FILE
@bg_option
@json_option(JOB_JSON_HELP)
@pass_app
def net_create(app: App, file: str, background: bool, as_json: bool) -> None:
    """Create and start a transient network from an XML FILE ('-' reads stdin), with progress.

    \b
    Example:
      virtjob net-create lab.xml
    """
    from virtjob.cli.jobrun import run_long

    source, xml = read_xml(file)

    def start() -> Job:
        with xml_errors(source):
            return app.conn.create_network_job(xml)

    run_long(
        app,
        start,
        background=background,
        as_json=as_json,
        success=lambda job: f"Network '{_network_of(job).name}' created from {source}",
    )


@click.command("net-start")
@NETWORK
@bg_option
@json_option(JOB_JSON_HELP)
@pass_app
def net_start(app: App, network: str, background: bool, as_json: bool) -> None:
    """Start a defined, inactive network, with progress.

    \b
    Example:
      virtjob net-start lab
    """
    from virtjob.cli.jobrun import run_long

    net = app.conn.lookup_network(network)
    run_long(
        app,
        net.start_job,
        background=background,
        as_json=as_json,
        success=lambda _job: f"Network '{net.name}' started",
    )


@click.command("net-destroy")
@NETWORK
@pass_app
def net_destroy(app: App, network: str) -> None:
    """Stop an active network.

    \b
    Example:
      virtjob net-destroy default
    """
    net = app.conn.lookup_network(network)
    net.destroy()
    click.echo(f"Network '{net.name}' destroyed")


COMMANDS = [
    net_list,
    net_info,
    net_dumpxml,
    net_define,
    net_undefine,
    net_create,
    net_start,
    net_destroy,
]
