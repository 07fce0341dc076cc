"""The QEMU driver's job workers: create, start, save, restore and dump of real guests.

Progress comes from QEMU itself (``query-migrate``, ``query-dump``) and from the bytes the
driver pumps. A worker's progress loop naps between polls of QEMU (every `POLL` seconds) and
is woken at once by a cancel request or by its pump stopping, so neither waits for the next
poll. Every worker undoes what it did before it ends the job: after a cancelled or
failed save or dump the guest runs on exactly as before and no partial file remains; after a
cancelled or failed restore, create or start, no QEMU process is left.

A cancel also cuts short the QMP call the worker is waiting on (`Abort`), so a QEMU that does
not answer (stopped, hung) cannot hold a cancel up: undoing a save or dump (`Undo`) gives each
QMP command at most `UNDO_TIMEOUT` seconds and all of them together `UNDO_DEADLINE`, and if QEMU
does not answer or finish in time the job fails at once saying so (the guest may stay paused,
no partial file remains). When one side of a stream fails because the other did
(QEMU sees EPIPE after our write failed, our feeder sees EPIPE after QEMU died), the job reports
the root cause.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from virtjob.config import DomainConfig, format_domain_xml, parse_domain_xml
from virtjob.drivers.base import Confinement, DomainRef
from virtjob.drivers.qemu.host import QemuDomain, QemuHost
from virtjob.drivers.qemu.monitor import Abort, Interrupted, NoAnswerError, RefusedError
from virtjob.drivers.qemu.process import QemuProcess
from virtjob.drivers.qemu.pump import PipeToSink, Pump, SourceToPipe, make_pipe
from virtjob.errors import InvalidArgError, OperationFailedError, OperationInvalidError, XMLError
from virtjob.jobs import JobContext
from virtjob.savefile import AtomicFile, SaveFileReader, SaveFileWriter

DRIVER_NAME = "qemu"
POLL = 0.05
"""Seconds between progress polls (and the longest a cancel waits to be noticed)."""
MAX_BANDWIDTH = 1 << 40
"""Bytes/s: lifts QEMU's 128 MiB/s default migration cap for saves to a file."""
SETTLE_TIMEOUT = 10.0
"""Seconds a finished save or dump may take to close its stream."""
FINISH_POLL = 0.005
"""Seconds between polls once QEMU has been sent everything and only has to finish."""
UNDO_TIMEOUT = 0.5
"""Seconds QEMU has to answer each command that undoes a cancelled or failed save or dump
before it is declared unresponsive."""
UNDO_DEADLINE = 0.85
"""Seconds the whole undoing of a save or dump may take (every command, every wait for QEMU to
settle): keeps a cancel within the engine's one second."""
UNWIND_TIMEOUT = 5.0
"""Seconds a save or dump waits, before it starts, for QEMU to finish unwinding an earlier
save or dump whose undo gave up on it (QEMU did not answer then)."""

Worker = Callable[[JobContext], object]


class Waker:
    """Lets a progress loop nap between polls yet wake at once when something happens.

    `abort` is raised by `cancel` (the job's ``on_cancel``): it also cuts short the QMP call
    the worker waits on.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.abort = Abort()

    def wake(self) -> None:
        """Cut the current (or next) nap short."""
        self._event.set()

    def cancel(self) -> None:
        """Wake the worker and interrupt its QMP call: the job is being cancelled."""
        self.abort.set()
        self._event.set()

    def nap(self, ctx: JobContext, seconds: float) -> bool:
        """Sleep up to `seconds` unless woken; return whether a cancel has been requested."""
        self._event.wait(seconds)
        self._event.clear()
        return ctx.cancel_requested


@dataclass(frozen=True, slots=True)
class Plan:
    """A worker and the hook the engine calls, from the cancelling thread, on a cancel."""

    worker: Worker
    on_cancel: Callable[[], None] | None = None


class _Cancelled(Exception):
    """Raised inside a worker to unwind to its cancel path."""


def _gone(process: QemuProcess, during: str) -> OperationFailedError:
    """The error of a job whose QEMU ended under it: who ended it, or its status and log."""
    process.exited.wait(1.0)
    if process.kill_reason is not None:
        return OperationFailedError(
            f"the {during} of domain {process.domain!r} did not finish: {process.kill_reason}"
            f" while it ran (QEMU was killed)"
        )
    status = process.returncode
    how = ""
    if status is not None and status < 0:
        with contextlib.suppress(ValueError):
            how = f" killed by {signal.Signals(-status).name};"
    return OperationFailedError(
        f"QEMU for domain {process.domain!r} exited during the {during} (status {status}):{how}"
        f" its last output: {process.log_tail()}"
    )


def _execute(
    process: QemuProcess,
    waker: Waker,
    during: str,
    command: str,
    arguments: dict[str, object] | None = None,
) -> Any:
    """Run a QMP command for a job: `_Cancelled` at once on a cancel; QEMU's death reported
    with its status and log."""
    try:
        return process.monitor.execute(command, arguments, abort=waker.abort)
    except Interrupted:
        raise _Cancelled from None
    except RefusedError:
        raise
    except OperationFailedError as exc:
        if process.ended.wait(1.0):
            raise _gone(process, during) from exc
        raise


_SAVE_LEFT = (
    "the guest was left paused: if the domain still runs, resume it once QEMU answers again,"
    " or destroy it"
)


def _unresponsive(
    process: QemuProcess, what: str, hung: _Hung, left: str = _SAVE_LEFT
) -> OperationFailedError:
    """The error of a job whose undo QEMU did not answer: what happened and what is left.

    Worded to stay true in a job's history: the domain may be gone by the time it is read.
    """
    if not hung.waited:
        happened = (
            "was stopped (by a signal), so it could not answer and virtjob gave up on it at once"
        )
    else:
        now = "stopped (by a signal)" if process.stopped() else "busy or hung"
        happened = (
            f"did not answer in time ({UNDO_TIMEOUT} s a command, {UNDO_DEADLINE} s in all;"
            f" it was {now}), so virtjob gave up on it"
        )
    return OperationFailedError(
        f"{what}; QEMU for domain {process.domain!r} (pid {process.pid}) {happened}:"
        f" no partial file remains; {left}"
    )


_MIGRATING = frozenset({"active", "setup", "cancelling", "device", "pre-switchover"})
"""``query-migrate`` states of a migration QEMU has not finished or given up."""
_STOPPED_BY_JOB = frozenset({"save-vm", "finish-migrate"})
"""``query-status`` states in which QEMU holds the guest for a save or dump of its own."""
_UNWIND_QUERIES: dict[str, tuple[str, AbstractSet[str]]] = {
    "save": ("query-migrate", _MIGRATING),
    "dump": ("query-dump", frozenset({"active"})),
}
"""For a save or dump QEMU may still be unwinding: the query that says how it stands, and its
states that mean it has not finished."""


def _give_up(
    process: QemuProcess,
    hung: _Hung | None,
    what: str,
    cause: BaseException | None = None,
    left: str = _SAVE_LEFT,
) -> None:
    """Raise the `_unresponsive` error (from `cause`) when the undo gave up (`hung`)."""
    if hung is not None:
        raise _unresponsive(process, what, hung, left) from cause


class _Hung(Exception):
    """QEMU is alive but did not answer (or settle) within the undo's time: give up on it.

    `waited` is False when virtjob gave up without waiting (QEMU stopped by a signal)."""

    def __init__(self, waited: bool) -> None:
        super().__init__("QEMU did not answer in time" if waited else "QEMU is stopped")
        self.waited = waited


class Undo:
    """The undoing of one cancelled or failed save or dump, bounded as a whole.

    Every QMP command gets at most `UNDO_TIMEOUT` seconds and all of them, with the waits for
    QEMU to settle, `UNDO_DEADLINE` seconds from the start: `_Hung` when QEMU is alive but
    does not make it. A QEMU that has gone needs no undoing: its commands answer None.
    """

    before_command: Callable[[QemuProcess, str], None] | None = None
    """For tests: called right before each undoing command is sent (e.g. to stop QEMU)."""

    def __init__(self, process: QemuProcess) -> None:
        self.process = process
        self.deadline = time.monotonic() + UNDO_DEADLINE

    def execute(self, command: str) -> dict[str, Any] | None:
        """QEMU's answer to `command`; None if QEMU refused it or has gone. Raises `_Hung`."""
        process = self.process
        if process.exited.is_set():
            return None
        if process.stopped():
            raise _Hung(waited=False)
        timeout = min(UNDO_TIMEOUT, self.deadline - time.monotonic())
        if timeout <= 0:
            raise _Hung(waited=True)
        hook = Undo.before_command
        if hook is not None:
            hook(process, command)
        try:
            answer = process.monitor.execute(command, timeout=timeout)
        except NoAnswerError:
            if process.ended.is_set():
                return None
            raise _Hung(waited=True) from None
        except OperationFailedError:
            return None  # refused (nothing to undo) or QEMU gone: either way it is not hanging
        return answer if isinstance(answer, dict) else {}

    def settle(self, query: str, busy: AbstractSet[str]) -> str | None:
        """Poll `query` until its status leaves `busy`; that status (None if QEMU has gone).

        Raises `_Hung` when the undo's deadline comes first.
        """
        while True:
            answer = self.execute(query)
            if self.process.exited.is_set():
                return None
            if answer is not None and str(answer.get("status")) not in busy:
                return str(answer.get("status"))
            if self.deadline - time.monotonic() <= POLL:
                raise _Hung(waited=True)
            time.sleep(POLL)  # QEMU announces no event we could wait on for this

    def resume(self, prior: str) -> None:
        """Put the guest back to running if it was, once QEMU has finished unwinding."""
        if self.process.exited.is_set() or prior != "running":
            return
        self.settle("query-status", _STOPPED_BY_JOB)
        self.execute("cont")


def _left_unwinding(process: QemuProcess, kind: str, hung: _Hung) -> _Hung:
    """Mark `process` as still unwinding the save or dump (`kind`) whose undo gave up on it,
    so the next save or dump waits for it first (`_await_unwound`); return `hung`."""
    process.unwinding = kind
    return hung


def _unwound(process: QemuProcess, kind: str, deadline: float) -> bool:
    """Whether QEMU says it has finished unwinding the abandoned `kind` ("save" or "dump"):
    that job's stream is over and QEMU no longer holds the guest for it. A command QEMU does
    not answer by `deadline` (at most `UNDO_TIMEOUT` each) counts as not yet."""
    query, busy = _UNWIND_QUERIES[kind]
    for command, unfinished in ((query, busy), ("query-status", _STOPPED_BY_JOB)):
        timeout = min(UNDO_TIMEOUT, deadline - time.monotonic())
        if timeout <= 0:
            return False
        try:
            answer = process.monitor.execute(command, timeout=timeout)
        except NoAnswerError:
            return False
        except OperationFailedError:
            if process.ended.wait(1.0):
                return True  # gone: nothing to wait for; the job's next command says so
            raise
        if str(answer.get("status")) in unfinished:
            return False
    return True


def _await_unwound(ctx: JobContext, process: QemuProcess, waker: Waker, action: str) -> None:
    """Before a save or dump: if an earlier save or dump of this QEMU was given up on while
    QEMU did not answer (`QemuProcess.unwinding`), wait until QEMU has unwound it, at most
    `UNWIND_TIMEOUT` seconds, so the new job never meets QEMU still busy with the old one
    (a second dump started while the first one's thread is still cleaning up shares QEMU's
    one dump state with it).

    Raises `_Cancelled` on a cancel, and `OperationFailedError` at once when QEMU is stopped
    by a signal, or when it has not unwound in time (or does not answer), saying so.
    """
    kind = process.unwinding
    if kind is None:
        return
    what = (
        f"cannot {action} domain {process.domain!r}: its QEMU (pid {process.pid}) has not"
        f" finished unwinding the {kind} that was given up on while it did not answer"
    )
    deadline = time.monotonic() + UNWIND_TIMEOUT
    while True:
        if process.stopped():
            raise OperationFailedError(
                f"{what}; it is stopped (by a signal): try again once it runs, or destroy"
                f" the domain"
            )
        if _unwound(process, kind, deadline):
            process.unwinding = None
            return
        if time.monotonic() >= deadline:
            raise OperationFailedError(
                f"{what}, and still had not {UNWIND_TIMEOUT} s later (or does not answer);"
                f" try again later, or destroy the domain"
            )
        if waker.nap(ctx, POLL):  # QEMU announces no event we could wait on for this
            raise _Cancelled


# -- create and start ----------------------------------------------------------------------


def _boot(
    host: QemuHost, ctx: JobContext, config: DomainConfig, waker: Waker
) -> QemuProcess | None:
    """Launch QEMU for `config` and let the guest run; None (QEMU gone) if cancelled."""
    ctx.initialize(bounded=True)
    ctx.update(percent=5)
    process = host.launch(config)
    try:
        ctx.update(percent=60)
        if ctx.cancel_requested:
            raise _Cancelled
        _execute(process, waker, "start", "cont")
        ctx.update(percent=90)
    except _Cancelled:
        process.kill()
        return None
    except BaseException:
        process.kill()
        raise
    return process


def create_domain(host: QemuHost, config: DomainConfig) -> Plan:
    """A worker that boots a new transient domain from `config`."""
    waker = Waker()

    def work(ctx: JobContext) -> DomainRef | None:
        process = _boot(host, ctx, config, waker)
        if process is None:
            ctx.finish_cancel()
            return None
        try:
            with host.lock:
                host.check_clash(config)
                domain = QemuDomain(config, persistent=False)
                host.attach(domain, process)
                return domain.ref
        except BaseException:
            process.kill()  # outside the host lock: the exit handler takes it
            raise

    return Plan(work, on_cancel=waker.cancel)


def start_domain(host: QemuHost, ref: DomainRef) -> Plan:
    """A worker that boots the defined, shut-off domain `ref`."""
    waker = Waker()

    def work(ctx: JobContext) -> DomainRef | None:
        with host.lock:
            domain = _shut_off(host, ref, "start")
        process = _boot(host, ctx, domain.config, waker)
        if process is None:
            ctx.finish_cancel()
            return None
        try:
            with host.lock:
                domain = _shut_off(host, ref, "start")
                host.attach(domain, process)
                return domain.ref
        except BaseException:
            process.kill()  # outside the host lock: the exit handler takes it
            raise

    return Plan(work, on_cancel=waker.cancel)


def _shut_off(host: QemuHost, ref: DomainRef, action: str) -> QemuDomain:
    domain = host.domain(ref)
    if domain.process is not None:
        raise OperationInvalidError(f"cannot {action} domain {ref.name!r}: it is already running")
    return domain


# -- save ----------------------------------------------------------------------------------


def save_domain(host: QemuHost, ref: DomainRef, path: str) -> Plan:
    """A worker that saves the running domain `ref` to `path`, then stops its QEMU.

    The guest is paused and its memory streamed (QEMU migration) through a pipe into the save
    file, behind a header carrying the domain XML and a checksum.
    """
    waker = Waker()

    def work(ctx: JobContext) -> None:
        try:
            save(ctx)
        except _Cancelled:  # undone: the guest is as before, the partial file is gone
            ctx.finish_cancel()

    def save(ctx: JobContext) -> None:
        domain, process = host.running_process(ref, "save")
        _await_unwound(ctx, process, waker, "save")
        prior = str(_execute(process, waker, "save", "query-status").get("status"))
        xml = format_domain_xml(domain.config)
        read_fd, write_fd = make_pipe()
        pump: PipeToSink | None = None
        try:
            what = f"a save of domain {ref.name!r}"
            with SaveFileWriter(
                path, DRIVER_NAME, xml, what=what, confinement=host.confinement
            ) as out:
                try:
                    _send_fd(process, waker, write_fd, "virtjob-save")
                finally:
                    os.close(write_fd)
                pump = PipeToSink(read_fd, out.write_image, f"virtjob-save-{ref.name}", waker.wake)
                read_fd = -1
                pump.start()
                try:
                    _execute(
                        process,
                        waker,
                        "save",
                        "migrate-set-parameters",
                        {"max-bandwidth": MAX_BANDWIDTH},
                    )
                    ctx.initialize(bounded=True)
                    if prior == "running":
                        _execute(process, waker, "save", "stop")
                    _execute(process, waker, "save", "migrate", {"uri": "fd:virtjob-save"})
                    _follow_migration(ctx, process, pump, waker)
                except _Cancelled:
                    hung = _abandon_migration(process, pump, prior)
                    _give_up(process, hung, f"the save of domain {ref.name!r} was cancelled")
                    raise
                except OperationFailedError as exc:
                    _give_up(process, _abandon_migration(process, pump, prior), exc.message, exc)
                    raise
                except BaseException:
                    _abandon_migration(process, pump, prior)
                    raise
                out.commit()
        finally:
            if read_fd >= 0:
                os.close(read_fd)
        process.quit()

    return Plan(work, on_cancel=waker.cancel)


def _send_fd(process: QemuProcess, waker: Waker, fd: int, name: str) -> None:
    """Hand QEMU `fd` as `name`; `_Cancelled` at once on a cancel."""
    try:
        process.monitor.send_fd(fd, name, abort=waker.abort)
    except Interrupted:
        raise _Cancelled from None


def _tick(
    ctx: JobContext,
    waker: Waker,
    process: QemuProcess,
    pump: Pump,
    during: str,
    seconds: float = POLL,
) -> None:
    """Nap until the next poll; `_Cancelled` on a cancel, a failure if QEMU or the pump died."""
    if waker.nap(ctx, seconds):
        raise _Cancelled
    if process.exited.is_set():
        raise _gone(process, during)
    if pump.error is not None:
        raise _pump_failure(pump.error, process, during)


def _follow_migration(
    ctx: JobContext, process: QemuProcess, pump: PipeToSink, waker: Waker
) -> None:
    """Report migration progress until it completes; `_Cancelled` on a cancel request."""
    while True:
        _tick(ctx, waker, process, pump, "save")
        info: dict[str, Any] = _execute(process, waker, "save", "query-migrate")
        status = info.get("status")
        ram = info.get("ram")
        if isinstance(ram, dict) and ram.get("total"):
            total = int(ram["total"])
            ctx.update(processed=total - int(ram.get("remaining", 0)), total=total)
        if status == "completed":
            if not pump.finished.wait(SETTLE_TIMEOUT):
                raise OperationFailedError(
                    f"QEMU finished the save of domain {process.domain!r} but did not close"
                    f" its stream"
                )
            if pump.error is not None:
                raise _pump_failure(pump.error, process, "save")
            return
        if status in ("failed", "cancelled"):
            raise _root_cause(pump, process, "save") or OperationFailedError(
                f"QEMU failed the save of domain {process.domain!r}:"
                f" {info.get('error-desc', status)}"
            )


def _root_cause(pump: Pump, process: QemuProcess, during: str) -> OperationFailedError | None:
    """When QEMU says its stream failed, the pump's own error if it has one (None if not).

    Our pump failing (disk full) closes the pipe, and QEMU then fails with EPIPE: the pump's
    error is the root cause. QEMU failing on its own closes its end, so the pump ends soon
    too, without error; either way the wait for the pump is short.
    """
    pump.finished.wait(SETTLE_TIMEOUT)
    if pump.error is None:
        return None
    return _pump_failure(pump.error, process, during)


def _pump_failure(error: Exception, process: QemuProcess, during: str) -> OperationFailedError:
    """The job error for a pump that stopped on `error`, naming the root cause.

    A broken pipe means QEMU stopped reading or writing its end: its death (status and log)
    or its own migration error is the cause, not the pipe.
    """
    if isinstance(error, OperationFailedError):
        return error
    if isinstance(error, OSError) and error.errno == errno.EPIPE:
        if process.ended.wait(1.0):
            return _gone(process, during)
        return OperationFailedError(
            f"QEMU for domain {process.domain!r} stopped reading the {during} stream:"
            f" {_migration_error(process)}; {process.log_tail()}"
        )
    return OperationFailedError(f"the {during} of domain {process.domain!r} failed: {error}")


def _migration_error(process: QemuProcess) -> str:
    """QEMU's own description of why its migration failed, if it gives one."""
    try:
        info = process.monitor.execute("query-migrate", timeout=UNDO_TIMEOUT)
    except OperationFailedError as exc:
        return exc.message
    return str(info.get("error-desc") or f"migration {info.get('status', 'state unknown')}")


def _abandon_migration(process: QemuProcess, pump: PipeToSink, prior: str) -> _Hung | None:
    """Cancel the migration, stop the pump and put the guest back as it was (`Undo`).

    Returns the `_Hung` when QEMU is alive but does not answer in time (the guest left
    paused, the process marked as still unwinding the save: `_await_unwound`), else None.
    """
    undo = Undo(process)
    try:
        undo.execute("migrate_cancel")
    except _Hung as hung:
        return _left_unwinding(process, "save", hung)
    finally:
        pump.stop()
    try:
        undo.settle("query-migrate", _MIGRATING)
        undo.resume(prior)
    except _Hung as hung:
        return _left_unwinding(process, "save", hung)
    return None


# -- restore -------------------------------------------------------------------------------


def read_save_header(path: str, confinement: Confinement | None = None) -> tuple[DomainConfig, str]:
    """Open the save file at `path`, check its header and return the domain it carries, and
    that domain's XML as the file has it (what `restore_domain` checks the file against).

    Raises `InvalidArgError` for a missing, truncated, foreign or corrupted file, or one that
    is not a regular file; `AccessDeniedError` for a path outside `confinement`.
    """
    with SaveFileReader(path, DRIVER_NAME, confinement=confinement) as reader:
        return saved_domain(reader), reader.xml


def saved_domain(reader: SaveFileReader) -> DomainConfig:
    """The domain an open save file carries; `InvalidArgError` if its XML is unusable."""
    try:
        return parse_domain_xml(reader.xml)
    except XMLError as exc:
        raise InvalidArgError(
            f"save file {reader.path} carries domain XML virtjob cannot use: {exc}"
        ) from exc


def restorable(host: QemuHost, config: DomainConfig) -> QemuDomain | None:
    """The shut-off domain a restore of `config` brings back, or None for a new one.

    Raises `OperationInvalidError` when another domain holds the name or UUID, or the domain
    is running. The caller holds the host lock.
    """
    existing = host.domains.get(config.uuid)
    if existing is None:
        host.check_clash(config)
        return None
    if existing.config.name != config.name:
        raise OperationInvalidError(
            f"cannot restore domain {config.name!r}: its uuid {config.uuid} belongs to"
            f" domain {existing.config.name!r}"
        )
    if existing.process is not None:
        raise OperationInvalidError(
            f"cannot restore domain {config.name!r}: it is running; destroy it first"
        )
    return existing


def restore_domain(host: QemuHost, path: str, config: DomainConfig, xml: str) -> Plan:
    """A worker that checks the whole save file, then streams it into a new QEMU.

    `config` is the domain the file carried when the restore was asked for, `xml` its XML
    text then (`read_save_header`): the job fails with `InvalidArgError` if the file's XML is
    no longer that text (the file changed while the job was queued). The XML text is compared,
    not its parse: a file whose XML has no ``<uuid>`` parses to a new random UUID each time.
    """
    waker = Waker()

    def work(ctx: JobContext) -> DomainRef | None:
        with SaveFileReader(path, DRIVER_NAME, confinement=host.confinement) as reader:
            if reader.xml != xml:
                raise InvalidArgError(f"save file {path} changed while the restore was queued")
            with host.lock:
                restorable(host, config)
            size = reader.header.image_length
            total = 2 * size
            ctx.initialize(bounded=True)
            ctx.update(processed=0, total=total)
            if not reader.verify(
                progress=lambda done: ctx.update(processed=done),
                cancelled=lambda: ctx.cancel_requested,
            ):
                ctx.finish_cancel()
                return None
            process = host.launch(config, incoming=True)
            try:
                _load(ctx, process, reader, size, waker)
            except _Cancelled:
                process.kill()
                ctx.finish_cancel()
                return None
            except BaseException:
                process.kill()
                raise
        try:
            with host.lock:
                domain = restorable(host, config) or QemuDomain(config, persistent=False)
                host.attach(domain, process)
                return domain.ref
        except BaseException:
            process.kill()  # outside the host lock: the exit handler takes it
            raise

    return Plan(work, on_cancel=waker.cancel)


def _load(
    ctx: JobContext, process: QemuProcess, reader: SaveFileReader, size: int, waker: Waker
) -> None:
    """Stream the image into the waiting QEMU and let the guest run."""
    read_fd, write_fd = make_pipe()
    try:
        _send_fd(process, waker, read_fd, "virtjob-restore")
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)
    feeder = SourceToPipe(
        write_fd,
        reader.image_chunks(),
        f"virtjob-restore-{process.domain}",
        waker.wake,
        on_moved=lambda moved: ctx.update(processed=size + moved),  # every write: smooth
    )
    feeder.start()
    try:
        _execute(process, waker, "restore", "migrate-incoming", {"uri": "fd:virtjob-restore"})
        while True:
            # Once all is sent, QEMU only has the tail to load: look again soon.
            pause = FINISH_POLL if feeder.finished.is_set() else POLL
            _tick(ctx, waker, process, feeder, "restore", pause)
            if feeder.finished.is_set():
                status = str(_execute(process, waker, "restore", "query-status").get("status"))
                if status != "inmigrate":
                    break
        migration = _execute(process, waker, "restore", "query-migrate")
        if migration.get("status") != "completed":
            raise OperationFailedError(
                f"QEMU could not load the saved state of domain {process.domain!r}:"
                f" {migration.get('error-desc', migration.get('status'))}; {process.log_tail()}"
            )
        _execute(process, waker, "restore", "cont")
    finally:
        feeder.stop()


# -- dump ----------------------------------------------------------------------------------


def dump_core(host: QemuHost, ref: DomainRef, path: str) -> Plan:
    """A worker that writes the guest's memory to `path` as an ELF core (dump-guest-memory)."""
    waker = Waker()

    def work(ctx: JobContext) -> None:
        try:
            dump(ctx)
        except _Cancelled:  # undone: the guest is as before, the partial file is gone
            ctx.finish_cancel()

    def dump(ctx: JobContext) -> None:
        _, process = host.running_process(ref, "dump")
        _await_unwound(ctx, process, waker, "dump")
        prior = str(_execute(process, waker, "dump", "query-status").get("status"))
        read_fd, write_fd = make_pipe()
        what = f"a core dump of domain {ref.name!r}"
        with AtomicFile(path, what=what, confinement=host.confinement) as out:
            try:
                _send_fd(process, waker, write_fd, "virtjob-dump")
            except BaseException:
                os.close(read_fd)
                raise
            finally:
                os.close(write_fd)
            pump = PipeToSink(read_fd, out.write, f"virtjob-dump-{ref.name}", waker.wake)
            pump.start()
            try:
                ctx.initialize(bounded=True)
                _execute(
                    process,
                    waker,
                    "dump",
                    "dump-guest-memory",
                    {"paging": False, "protocol": "fd:virtjob-dump", "detach": True},
                )
                _follow_dump(ctx, process, pump, waker)
            except _Cancelled:
                hung = _abandon_dump(process, pump, prior)
                what = f"the dump of domain {ref.name!r} was cancelled"
                _give_up(process, hung, what, left=_DUMP_LEFT)
                raise
            except OperationFailedError as exc:
                hung = _abandon_dump(process, pump, prior)
                _give_up(process, hung, exc.message, exc, _DUMP_LEFT)
                raise
            except BaseException:
                _abandon_dump(process, pump, prior)
                raise
            out.commit()

    return Plan(work, on_cancel=waker.cancel)


_DUMP_LEFT = (
    "if the domain still runs, QEMU resumes the guest by itself once it runs again, and the"
    " domain's next save or dump waits for that (or destroy the domain)"
)


def _follow_dump(ctx: JobContext, process: QemuProcess, pump: PipeToSink, waker: Waker) -> None:
    while True:
        _tick(ctx, waker, process, pump, "dump")
        info = _execute(process, waker, "dump", "query-dump")
        if info.get("total"):
            ctx.update(processed=int(info.get("completed", 0)), total=int(info["total"]))
        status = info.get("status")
        if status == "completed":
            if not pump.finished.wait(SETTLE_TIMEOUT) or pump.error is not None:
                raise _pump_failure(
                    pump.error or OSError("QEMU did not close the dump stream"), process, "dump"
                )
            return
        if status == "failed":
            raise _root_cause(pump, process, "dump") or OperationFailedError(
                f"QEMU failed the dump of domain {process.domain!r}: {process.log_tail()}"
            )


def _abandon_dump(process: QemuProcess, pump: PipeToSink, prior: str) -> _Hung | None:
    """Break the dump stream off and wait until QEMU has put the guest back as it was.

    Returns the `_Hung` when QEMU is alive but does not answer (the process marked as still
    unwinding the dump: `_await_unwound`), else None.
    """
    pump.stop()
    undo = Undo(process)
    try:
        undo.settle("query-dump", {"active"})
        # QEMU resumes the guest on its own once the dump has unwound: wait until it has.
        undo.settle("query-status", (_STOPPED_BY_JOB | {"paused"}) - {prior})
    except _Hung as hung:
        return _left_unwinding(process, "dump", hung)
    return None
