"""``virtjob``: the command line tool (virsh-like) over the public API."""

from virtjob.cli.main import cli, main

__all__ = ["cli", "main"]
