"""Exit codes, the one-line error report, and the text and JSON shapes of what virtjob prints.

The JSON shapes are a documented, stable interface (docs/cli.md): fields may be added, but never
renamed, removed or given another meaning. A job's is the job document virtjobd answers with
(`virtjob.api.encode_job`), so a script reads the same keys from either.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import click

from virtjob.domain import DomainInfo
from virtjob.errors import (
    AuthError,
    ConnectError,
    JobCancelledError,
    JobTimeoutError,
    NoDomainError,
    NoJobError,
    NoNetworkError,
    VirtError,
    XMLError,
)
from virtjob.jobs import Job
from virtjob.network import NetworkInfo

if TYPE_CHECKING:
    from virtjob.api.document import JobDocument


class ExitCode(enum.IntEnum):
    """What a virtjob process's exit status means."""

    OK = 0
    FAILED = 1
    USAGE = 2
    CANCELLED = 3
    NOT_FOUND = 4
    TIMEOUT = 5
    CONNECT = 6
    INTERRUPTED = 130


def exit_code_for(error: VirtError) -> ExitCode:
    """Return the exit code that reports `error`."""
    if isinstance(error, NoDomainError | NoNetworkError | NoJobError):
        return ExitCode.NOT_FOUND
    if isinstance(error, JobCancelledError):
        return ExitCode.CANCELLED
    if isinstance(error, JobTimeoutError):
        return ExitCode.TIMEOUT
    if isinstance(error, ConnectError | AuthError):
        return ExitCode.CONNECT
    return ExitCode.FAILED


class CliError(click.ClickException):
    """A failure reported as one line on stderr, ``LABEL: MESSAGE``, with its exit code."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED, label: str = "error"):
        super().__init__(message)
        # click declares exit_code a class variable; here each error carries its own.
        object.__setattr__(self, "exit_code", int(code))
        self.label = label

    def show(self, file: Any = None) -> None:
        """Print the one-line report on stderr."""
        click.echo(f"{self.label}: {self.message}", file=file or sys.stderr)


def xml_error_message(source: str, error: XMLError) -> str:
    """Return ``SOURCE:LINE:COLUMN: problem`` for an XML document read from `source`."""
    message = error.message
    if error.line is None:
        return f"{source}: {message}"
    where = f"line {error.line}, column {error.column}: "
    if message.startswith(where):
        message = message[len(where) :]
    column = f":{error.column}" if error.column is not None else ""
    return f"{source}:{error.line}{column}: {message}"


# -- JSON -------------------------------------------------------------------------------------


def echo_json(value: object) -> None:
    """Print `value` as indented JSON on stdout."""
    import json  # only for --json

    click.echo(json.dumps(value, indent=2, sort_keys=False))


def domain_json(info: DomainInfo) -> dict[str, Any]:
    """The documented JSON shape of a domain."""
    return {
        "name": info.name,
        "uuid": str(info.uuid),
        "id": info.id,
        "state": str(info.state),
        "active": info.state.active,
        "persistent": info.persistent,
        "memory": info.memory,
        "current_memory": info.current_memory,
        "vcpus": info.vcpus,
        "os_type": info.os_type,
    }


def network_json(info: NetworkInfo) -> dict[str, Any]:
    """The documented JSON shape of a network."""
    return {
        "name": info.name,
        "uuid": str(info.uuid),
        "active": info.active,
        "persistent": info.persistent,
        "bridge": info.bridge,
        "forward_mode": info.forward_mode,
    }


def job_json(job: Job) -> dict[str, Any]:
    """The documented JSON shape of a job: its `virtjob.api.JobDocument`, as virtjobd answers
    ``GET /v1/jobs/{id}`` (docs/api.md). Raises `NoJobError` once the job is destroyed."""
    return document_json(job.document())


def document_json(document: JobDocument) -> dict[str, Any]:
    """`job_json` of a document already fetched."""
    from virtjob.api.document import encode_job  # only a command printing a job needs it

    return encode_job(document)


# -- text -------------------------------------------------------------------------------------


def format_bytes(size: float) -> str:
    """Return `size` bytes in binary units, e.g. ``512.0 MiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float | None) -> str:
    """Return `seconds` as ``M:SS`` (or ``H:MM:SS``); ``-:--`` when unknown."""
    if seconds is None:
        return "-:--"
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def format_percent(percent: float | None) -> str:
    """Return ``47.5%``, or ``?%`` while a job is unbounded."""
    return "?%" if percent is None else f"{percent:.1f}%"


def echo_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], file: TextIO | None = None
) -> None:
    """Print rows under a header and a rule, columns padded to their widest cell (virsh-like)."""
    table = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return " " + "   ".join(
            cell.ljust(width) for cell, width in zip(cells, widths, strict=True)
        )

    click.echo(line(table[0]).rstrip(), file=file)
    click.echo("-" * (sum(widths) + 3 * (len(widths) - 1) + 2), file=file)
    for row in table[1:]:
        click.echo(line(row).rstrip(), file=file)


def echo_fields(fields: Sequence[tuple[str, str]]) -> None:
    """Print ``Label:  value`` lines, values aligned (like ``virsh dominfo``)."""
    width = max(len(label) for label, _ in fields) + 1
    for label, value in fields:
        click.echo(f"{label + ':':<{width}} {value}")


def yes_no(flag: bool) -> str:
    """Return ``yes`` or ``no``."""
    return "yes" if flag else "no"
