"""The ``virtjob`` command group: global options, error reporting and exit codes.

The group imports a command's module only when that command is run (`COMMAND_MODULES` says
where each one lives): ``virtjob list`` loads neither the job commands nor the progress bar.
``--help`` and shell completion load them all.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click
from click.core import ParameterSource

from virtjob import __version__
from virtjob.cli.context import App
from virtjob.cli.output import CliError, ExitCode, exit_code_for
from virtjob.errors import InvalidArgError, VirtError
from virtjob.uri import DEFAULT_URI, URI_ENV, parse_uri

# The module of virtjob.cli whose COMMANDS list holds each command (a test checks both agree).
COMMAND_MODULES = {
    "domains": (
        "list",
        "dominfo",
        "domstate",
        "dumpxml",
        "define",
        "undefine",
        "create",
        "start",
        "destroy",
        "suspend",
        "resume",
        "shutdown",
        "save",
        "restore",
        "dump",
    ),
    "networks": (
        "net-list",
        "net-info",
        "net-dumpxml",
        "net-define",
        "net-undefine",
        "net-create",
        "net-start",
        "net-destroy",
    ),
    "jobs": (
        "job-list",
        "job-info",
        "job-cancel",
        "job-wait",
        "job-destroy",
        "domjobinfo",
        "domjobabort",
    ),
    "completion": ("completion",),
}
MODULE_OF = {name: module for module, names in COMMAND_MODULES.items() for name in names}

# Commands that only read: the only ones a mistyped command name is ever steered to. A typo of
# a command that changes state ("strat", "destory") gets no suggestion at all.
READ_ONLY_COMMANDS = frozenset(
    {
        "list",
        "dominfo",
        "domstate",
        "dumpxml",
        "domjobinfo",
        "net-list",
        "net-info",
        "net-dumpxml",
        "job-list",
        "job-info",
        "completion",
    }
)

EPILOG = f"""\b
Connection: -c URI, else ${URI_ENV}, else {DEFAULT_URI}.
Exit codes: 0 ok, 1 failed, 2 usage error, 3 cancelled, 4 no such
domain/network/job, 5 timeout, 6 cannot connect, 130 interrupted.
Run 'virtjob COMMAND --help' for a command's options and an example.
"""

DEBUG_FORMAT = "%(asctime)s.%(msecs)03d %(name)s %(levelname)s: %(message)s"


class UnknownCommandError(click.UsageError):
    """A command name virtjob does not have; suggests only read-only commands."""

    def __init__(self, name: str, ctx: click.Context, candidates: Sequence[str]) -> None:
        message = f"No such command {name!r}."
        close = suggestions(name, candidates)
        if close:
            message += f" Did you mean {' or '.join(repr(c) for c in close)}?"
        super().__init__(message, ctx)


def suggestions(name: str, candidates: Sequence[str]) -> list[str]:
    """The read-only commands among `candidates` closest to `name` (at most 2), best first.

    A command that changes state (start, destroy, undefine...) is never suggested, however
    close; and when one is closer to `name` than any read-only command, nothing is suggested
    (``net-strat`` was meant as ``net-start``: offering ``net-list`` would only mislead).
    """
    import difflib  # only on a typo

    found = []
    for match in difflib.get_close_matches(name, sorted(candidates), n=len(candidates)):
        if match not in READ_ONLY_COMMANDS:
            break
        found.append(match)
    return found[:2]


def start_debug_log() -> Callable[[], None]:
    """Send the records of every ``virtjob`` logger, from DEBUG up, to stderr (``--debug``):
    job transitions, QMP commands, daemon requests, what the CLI does. Other libraries'
    loggers are left as they are. Returns the function that undoes it. Raises nothing."""
    import logging  # loaded by the library anyway; imported here for what it is used for

    logger = logging.getLogger("virtjob")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(DEBUG_FORMAT, "%H:%M:%S"))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    def stop() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)

    return stop


class VirtjobGroup(click.Group):
    """A click group that loads each command when it is asked for and reports every failure
    as one line on stderr with its exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command's name, sorted (none of their modules is loaded)."""
        return sorted({*MODULE_OF, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command `cmd_name`, its module imported on first use; None if there is none."""
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in MODULE_OF:
            module = importlib.import_module(f"virtjob.cli.{MODULE_OF[cmd_name]}")
            for found in module.COMMANDS:
                self.add_command(found)
            command = super().get_command(ctx, cmd_name)
        return command

    def run(
        self,
        args: Sequence[str] | None = None,
        prog_name: str = "virtjob",
        *,
        restore_signals: bool = True,
    ) -> int:
        """Run the command line `args` and return the exit code (never raises, bar SystemExit).

        Following a job takes over SIGINT, SIGTERM and SIGHUP and ignores them once the job has
        ended; they are given back at the end unless `restore_signals` is False, as for the
        ``virtjob`` process itself, which exits next: a late Ctrl-C must not change its status.
        """
        try:
            return self._run(args, prog_name)
        finally:
            # Only following a job takes them over, and it loads virtjob.cli.signals to do so.
            signals = sys.modules.get("virtjob.cli.signals")
            if restore_signals and signals is not None:
                signals.SIGNALS.restore()

    def _run(self, args: Sequence[str] | None, prog_name: str) -> int:
        try:
            result = self.main(args, prog_name, standalone_mode=False)
        except click.exceptions.NoArgsIsHelpError as exc:  # plain "virtjob": the help
            exc.show()
            return exc.exit_code
        except click.UsageError as exc:
            return _usage_error(exc)
        except click.ClickException as exc:
            with contextlib.suppress(OSError):  # stderr gone too (the terminal hung up)
                exc.show()
            return exc.exit_code
        except click.Abort:  # Ctrl-C outside a job wait, or EOF on a prompt
            click.echo("interrupted", err=True)
            return ExitCode.INTERRUPTED
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise
            from virtjob.cli.progress import silence_stdout

            silence_stdout()  # the reader went away (virtjob list | head): not an error
            return ExitCode.OK
        return result if isinstance(result, int) else ExitCode.OK

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Find the command `args[0]`; `UnknownCommandError` (exit 2) when there is none."""
        name = args[0]
        if (
            not ctx.resilient_parsing
            and not name.startswith("-")
            and self.get_command(ctx, name) is None
        ):
            raise UnknownCommandError(name, ctx, self.list_commands(ctx))
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        """Invoke the subcommand, turning a `VirtError` or a crash into a one-line error."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except VirtError as exc:
            _trace_if_debug(ctx)
            raise CliError(exc.message, exit_code_for(exc)) from exc
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise
            _trace_if_debug(ctx)
            raise CliError(f"{exc}; run with --debug for details") from exc
        except Exception as exc:
            _trace_if_debug(ctx)
            raise CliError(
                f"internal error: {type(exc).__name__}: {exc}; this is a bug in virtjob,"
                f" please report it with the output of --debug"
            ) from exc


def _usage_error(exc: click.UsageError) -> int:
    where = exc.ctx.command_path if exc.ctx is not None else "virtjob"
    message = exc.format_message().replace("\n", " ")
    if isinstance(exc, UnknownCommandError):
        hint = f"'{where} --help' lists the commands"
    else:
        hint = f"see '{where} --help'"
    click.echo(f"error: {message} ({hint})", err=True)
    return exc.exit_code


def _trace_if_debug(ctx: click.Context) -> None:
    app = ctx.find_object(App)
    if app is not None and app.debug:
        import traceback  # only with --debug

        traceback.print_exc()


def _check_uri(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            parse_uri(value)
        except InvalidArgError as exc:
            if ctx.get_parameter_source("uri") is ParameterSource.ENVIRONMENT:
                raise click.UsageError(
                    f"${URI_ENV} is not a valid URI: {exc.message}; fix or unset it, or pass"
                    f" -c URI",
                    ctx,
                ) from exc
            raise click.BadParameter(exc.message, ctx, param) from exc
    return value


@click.group(cls=VirtjobGroup, epilog=EPILOG, context_settings={"max_content_width": 100})
@click.option(
    "-c",
    "--connect",
    "uri",
    metavar="URI",
    envvar=URI_ENV,
    callback=_check_uri,
    help=f"Host to manage, e.g. test:///default or 'test+unix:///default?socket=PATH'"
    f" [default: ${URI_ENV}, else {DEFAULT_URI}].",
)
@click.option(
    "--debug",
    is_flag=True,
    help="Log what virtjob does (jobs, QMP commands, daemon requests) on stderr, and show"
    " the traceback of an error.",
)
@click.version_option(__version__, prog_name="virtjob")
@click.pass_context
def cli(ctx: click.Context, uri: str | None, debug: bool) -> None:
    """Manage virtual machines and networks; long operations run as cancellable jobs.

    \b
    Examples:
      virtjob list --all
      virtjob save test /var/tmp/test.save      # live progress; Ctrl-C cancels
      virtjob -c 'test+unix:///default?socket=/tmp/vj.sock' save --bg test /tmp/t.save
      virtjob -c 'test+unix:///default?socket=/tmp/vj.sock' job-wait JOB_ID
    """
    if debug:
        ctx.call_on_close(start_debug_log())
    app = App(uri or DEFAULT_URI, debug=debug)
    ctx.obj = app
    ctx.call_on_close(app.close)


def main(argv: Sequence[str] | None = None) -> int:
    """Run virtjob with `argv` (default: ``sys.argv[1:]``) and return its exit code.

    The entry point of the ``virtjob`` process, to be exited with the code: once a followed job
    has ended, SIGINT, SIGTERM and SIGHUP stay ignored (see `JobSignals`). What is alive when
    it starts (the modules loaded, their classes and functions: alive until the process ends)
    is frozen out of the garbage collector (`gc.freeze`), so the command's collections do not
    look it over again; so is what is alive when the command is done: the interpreter's last
    collection, as the process exits, would otherwise take apart every module, class and
    function one by one (about 6 ms of the 50 of ``virtjob list``) only for the system to
    free the memory at once just after. Exit handlers, flushing and closing what is not in a
    reference cycle happen as always.
    """
    gc.freeze()
    try:
        return cli.run(argv, restore_signals=False)
    finally:
        gc.freeze()
