"""Per-invocation state shared by every command: the URI, the connection, ``--debug``."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

import virtjob
from virtjob.cli.output import CliError, ExitCode, xml_error_message
from virtjob.errors import InvalidArgError, NoSupportError, XMLError
from virtjob.paths import is_text, printable
from virtjob.uri import parse_uri

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("virtjob.cli")

MAX_XML_BYTES = 1 << 20


@dataclass
class App:
    """What the global options chose; opens the connection on first use and closes it at exit."""

    uri: str
    debug: bool = False
    _conn: virtjob.Connection | None = field(default=None, init=False)

    @property
    def in_process(self) -> bool:
        """True when the URI names a driver inside this process (no daemon)."""
        return not parse_uri(self.uri).is_remote

    @property
    def conn(self) -> virtjob.Connection:
        """The open connection; a bad or unsupported URI is a usage error (exit 2)."""
        if self._conn is None:
            log.debug("connecting to %s", self.uri)
            began = time.monotonic()
            try:
                self._conn = virtjob.open(self.uri)
            except (InvalidArgError, NoSupportError) as exc:
                raise CliError(str(exc), ExitCode.USAGE) from exc
            log.debug("connected to %s in %.3f s", self.uri, time.monotonic() - began)
        return self._conn

    def file_path(self, file: str) -> str:
        """`file` made absolute, to hand to a save, restore or dump. Through a daemon (whose
        API carries text) a name that is not valid UTF-8 is refused here, before anything is
        sent: `CliError` (usage) saying so and to rename the file."""
        path = os.path.abspath(file)
        if not self.in_process and not is_text(path):
            raise CliError(
                f"{printable(path)}: the path is not valid UTF-8 text (a byte shown as"
                f" \\udcXX is not UTF-8), and virtjobd takes only text paths; rename the file"
                f" (and any directory on the way) to a UTF-8 name",
                ExitCode.USAGE,
            )
        return path

    def close(self) -> None:
        """Close the connection if it was opened."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def daemon_uri(self) -> str:
        """This URI's host served by a ``virtjobd`` on its default socket, shell-quoted."""
        import shlex  # only for this hint

        from virtjob.defaults import daemon_socket

        uri = parse_uri(self.uri)
        return shlex.quote(f"{uri.driver}+unix://{uri.path}?socket={daemon_socket()}")

    def daemon_hint(self) -> str:
        """What to do instead of an in-process URI: start ``virtjobd``, use its default socket."""
        return f"start the daemon with 'virtjobd &' and use -c {self.daemon_uri()}"

    def require_daemon(self, what: str) -> None:
        """Refuse `what` (e.g. ``--bg``) on an in-process driver, saying why and what to use."""
        if self.in_process:
            raise CliError(
                f"{what} needs a daemon: with {self.uri} the job runs inside this virtjob"
                f" process and would die when it exits; {self.daemon_hint()}",
                ExitCode.USAGE,
            )

    def require_lasting_guests(self, command: str) -> None:
        """Refuse to run a guest on an in-process QEMU host, where it dies with this command.

        The simulated ``test:///`` guests are let be: they are for trying the tool.
        """
        uri = parse_uri(self.uri)
        if uri.driver == "qemu" and not uri.is_remote:
            raise CliError(
                f"{command} refused on {self.uri}: the QEMU guest would run inside this"
                f" virtjob process and stop when this command exits; {self.daemon_hint()}",
                ExitCode.USAGE,
            )


pass_app = click.make_pass_decorator(App)


def read_xml(path: str) -> tuple[str, str]:
    """Read an XML document from `path` (``-`` for stdin); return (source name, text).

    An unreadable file is a usage error (exit 2); a document that is not UTF-8 fails (exit 1).
    """
    if not path.strip():
        raise CliError(
            f"no XML file given ({path!r}): name an XML file, or '-' to read stdin",
            ExitCode.USAGE,
        )
    source = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_XML_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_XML_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CliError(
            f"cannot read XML file {source!r}: {reason}; check the path and its permissions",
            ExitCode.USAGE,
        ) from exc
    if len(data) > MAX_XML_BYTES:
        raise CliError(f"{source}: the document is over 1 MiB; virtjob refuses larger ones")
    try:
        return source, data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def xml_errors(source: str) -> XMLErrorReport:
    """Context manager: report an `XMLError` as ``SOURCE:LINE:COLUMN: problem`` (exit 1)."""
    return XMLErrorReport(source)


class XMLErrorReport:
    """Turns an `XMLError` raised inside the block into a located one-line error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, XMLError):
            raise CliError(xml_error_message(self.source, exc)) from exc


def json_option(
    help_text: str = "Print machine-readable JSON (see docs/cli.md).",
) -> Callable[[F], F]:
    """The ``--json`` flag, passed to the command as ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def _check_bg(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    app = ctx.find_object(App)
    if value and app is not None and not ctx.resilient_parsing:
        app.require_daemon("--bg")
    return value


def bg_option(func: F) -> F:
    """The ``--bg`` flag: print the job id and return at once (daemon URIs only)."""
    return click.option(
        "--bg",
        "background",
        is_flag=True,
        callback=_check_bg,
        help="Print the job id and return at once; the job runs on in the daemon"
        " (refused for in-process URIs such as test:///default).",
    )(func)


def non_empty(lister: str) -> Callable[[click.Context, click.Parameter, str], str]:
    """An argument callback refusing an empty name or id as a usage error (exit 2).

    `lister` is the command that shows what exists, e.g. ``job-list``.
    """

    def check(ctx: click.Context, param: click.Parameter, value: str) -> str:
        if not ctx.resilient_parsing and not value.strip():
            raise click.BadParameter(
                f"must not be empty; 'virtjob {lister}' shows what exists", ctx, param
            )
        return value

    return check


def non_empty_path(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """An argument callback refusing an empty file path as a usage error (exit 2).

    ``os.path.abspath('')`` is the working directory: without this, ``virtjob dump test ''``
    tried to write a directory.
    """
    if not ctx.resilient_parsing and value == "":
        raise click.BadParameter("must not be empty; name a file", ctx, param)
    return value


def exclusive_options(**flags: bool) -> None:
    """Refuse more than one of `flags` (``--all``, ``--inactive``…) as a usage error."""
    given = [f"--{name}" for name, on in flags.items() if on]
    if len(given) > 1:
        raise click.UsageError(
            f"{' and '.join(given)} exclude each other; give one of them",
            click.get_current_context(silent=True),
        )
