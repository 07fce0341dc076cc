"""Shell completion: domain, network and job names from the host, and ``virtjob completion``.

The completers are attached to the commands' arguments; click's completion machinery is only
imported when the shell asks (a completer runs) or a script is printed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

import virtjob
from virtjob.uri import default_uri

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

COMPLETE_VAR = "_VIRTJOB_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


def _names(ctx: click.Context, lister: Callable[[virtjob.Connection], list[str]]) -> list[str]:
    uri = ctx.find_root().params.get("uri") or default_uri()
    try:
        with virtjob.open(uri) as conn:
            return lister(conn)
    except Exception:  # completion must never break the shell
        return []


def complete_domain(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Complete a domain name."""
    from click.shell_completion import CompletionItem

    names = _names(ctx, lambda conn: [d.name for d in conn.list_domains()])
    return [CompletionItem(n) for n in sorted(names) if n.startswith(incomplete)]


def complete_network(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Complete a network name."""
    from click.shell_completion import CompletionItem

    names = _names(ctx, lambda conn: [n.name for n in conn.list_networks()])
    return [CompletionItem(n) for n in sorted(names) if n.startswith(incomplete)]


def complete_job(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Complete a job id, with what the job does (kind and subject) as its help text."""
    from click.shell_completion import CompletionItem

    jobs = _names(ctx, lambda conn: [f"{j.id}\t{j.kind} {j.subject}" for j in conn.list_jobs()])
    items = []
    for entry in jobs:
        job_id, what = entry.split("\t", 1)
        if job_id.startswith(incomplete):
            # help= by name: the second positional parameter is the item's *type* ("plain",
            # "file", "dir"); a type bash does not know makes the shell drop the item.
            items.append(CompletionItem(job_id, help=what))
    return items


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL.

    \b
    Example (add the line to ~/.bashrc):
      eval "$(virtjob completion bash)"
    """
    from click.shell_completion import get_completion_class

    root = ctx.find_root()
    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(root.command, {}, root.info_name or "virtjob", COMPLETE_VAR).source())


COMMANDS = [completion]
