"""The QEMU driver's job workers: create, start, save, restore and dump of real guests.

Progress comes from QEMU itself (``query-migrate``, ``query-dump``) and from the bytes the
driver pumps. A worker's progress loop naps between polls of QEMU (every `POLL` seconds) and
is woken at once by a cancel request or by its pump stopping, so neither waits for the next
poll. Every worker undoes what it did before it ends the job: after a cancelled or
failed save or dump the guest runs on exactly as before and no partial file remains; after a
cancelled or failed restore, create or start, no QEMU process is left.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from virtjob.config import DomainConfig, format_domain_xml, parse_domain_xml
from virtjob.drivers.base import Confinement, DomainRef
from virtjob.drivers.qemu.host import QemuDomain, QemuHost
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
FINISH_POLL = 0.005
"""Seconds between polls once QEMU has been sent everything and only has to finish."""

Worker = Callable[[JobContext], object]


class Waker:
    """Lets a progress loop nap between polls yet wake at once when something happens."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wake(self) -> None:
        """Cut the current (or next) nap short."""
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
    process.exited.wait(1.0)
    return OperationFailedError(
        f"QEMU for domain {process.domain!r} exited during the {during}"
        f" (status {process.returncode}): {process.log_tail()}"
    )


def _settle(
    process: QemuProcess, query: str, busy: set[str], timeout: float = SETTLE_TIMEOUT
) -> None:
    """Poll `query` until its status leaves `busy` (bounded by `timeout`, over if QEMU dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not process.exited.is_set():
        with contextlib.suppress(OperationFailedError):
            if str(process.monitor.execute(query).get("status")) not in busy:
                return
        time.sleep(POLL)  # QEMU announces no event we could wait on for this


def _resume(process: QemuProcess, prior: str) -> None:
    """Put the guest back to running if it was, once QEMU has finished unwinding."""
    if process.exited.is_set() or prior != "running":
        return
    _settle(process, "query-status", {"save-vm", "finish-migrate"})
    with contextlib.suppress(OperationFailedError):
        process.monitor.execute("cont")


# -- create and start ----------------------------------------------------------------------


def _boot(host: QemuHost, ctx: JobContext, config: DomainConfig) -> QemuProcess | None:
    """Launch QEMU for `config` and let the guest run; None (QEMU gone) if cancelled."""
    ctx.initialize(bounded=True)
    ctx.update(percent=5)
    process = host.launch(config)
    try:
        ctx.update(percent=60)
        if ctx.cancel_requested:
            raise _Cancelled
        process.monitor.execute("cont")
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

    def work(ctx: JobContext) -> DomainRef | None:
        process = _boot(host, ctx, config)
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

    return Plan(work)


def start_domain(host: QemuHost, ref: DomainRef) -> Plan:
    """A worker that boots the defined, shut-off domain `ref`."""

    def work(ctx: JobContext) -> DomainRef | None:
        with host.lock:
            domain = _shut_off(host, ref, "start")
        process = _boot(host, ctx, domain.config)
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

    return Plan(work)


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
        domain, process = host.running_process(ref, "save")
        monitor = process.monitor
        prior = str(monitor.execute("query-status").get("status"))
        xml = format_domain_xml(domain.config)
        read_fd, write_fd = make_pipe()
        pump: PipeToSink | None = None
        cancelled = False
        try:
            what = f"a save of domain {ref.name!r}"
            with SaveFileWriter(
                path, DRIVER_NAME, xml, what=what, confinement=host.confinement
            ) as out:
                try:
                    monitor.send_fd(write_fd, "virtjob-save")
                finally:
                    os.close(write_fd)
                pump = PipeToSink(read_fd, out.write_image, f"virtjob-save-{ref.name}", waker.wake)
                read_fd = -1
                pump.start()
                monitor.execute("migrate-set-parameters", {"max-bandwidth": MAX_BANDWIDTH})
                ctx.initialize(bounded=True)
                if prior == "running":
                    monitor.execute("stop")
                monitor.execute("migrate", {"uri": "fd:virtjob-save"})
                try:
                    _follow_migration(ctx, process, pump, waker)
                except _Cancelled:
                    cancelled = True
                    _abandon_migration(process, pump)
                else:
                    out.commit()
        except BaseException:
            if read_fd >= 0:
                os.close(read_fd)
            if pump is not None:
                _abandon_migration(process, pump)
            _resume(process, prior)
            raise
        if cancelled:  # the partial file is gone: leaving the block removed it
            _resume(process, prior)
            ctx.finish_cancel()
            return
        process.quit()

    return Plan(work, on_cancel=waker.wake)


def _query(process: QemuProcess, command: str, during: str) -> Any:
    """Run a QMP query; when it fails because QEMU died, say so with QEMU's own last words."""
    try:
        return process.monitor.execute(command)
    except OperationFailedError:
        if process.ended.wait(1.0):
            raise _gone(process, during) from None
        raise


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
        raise _pump_failure(pump.error, process.domain, during)


def _follow_migration(
    ctx: JobContext, process: QemuProcess, pump: PipeToSink, waker: Waker
) -> None:
    """Report migration progress until it completes; `_Cancelled` on a cancel request."""
    while True:
        _tick(ctx, waker, process, pump, "save")
        info: dict[str, Any] = _query(process, "query-migrate", "save")
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
                raise _pump_failure(pump.error, process.domain, "save")
            return
        if status in ("failed", "cancelled"):
            raise OperationFailedError(
                f"QEMU failed the save of domain {process.domain!r}:"
                f" {info.get('error-desc', status)}"
            )


def _pump_failure(error: Exception, domain: str, during: str) -> OperationFailedError:
    if isinstance(error, OperationFailedError):
        return error
    return OperationFailedError(f"the {during} of domain {domain!r} failed: {error}")


def _abandon_migration(process: QemuProcess, pump: PipeToSink) -> None:
    with contextlib.suppress(OperationFailedError):
        process.monitor.execute("migrate_cancel")
    pump.stop()
    _settle(process, "query-migrate", {"active", "setup", "cancelling", "device"})


# -- restore -------------------------------------------------------------------------------


def read_save_header(path: str, confinement: Confinement | None = None) -> DomainConfig:
    """Open the save file at `path`, check its header and return the domain it carries.

    Raises `InvalidArgError` for a missing, truncated, foreign or corrupted file, or one that
    is not a regular file; `AccessDeniedError` for a path outside `confinement`.
    """
    with SaveFileReader(path, DRIVER_NAME, confinement=confinement) as reader:
        return saved_domain(reader)


def saved_domain(reader: SaveFileReader) -> DomainConfig:
    """The domain an open save file carries; `InvalidArgError` if its XML is unusable."""
    try:
        return parse_domain_xml(reader.xml)
    except XMLError as exc:
        raise InvalidArgError(
            f"save file {reader.path} carries domain XML virtjob cannot use: {exc}"
        ) from None


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


def restore_domain(host: QemuHost, path: str, config: DomainConfig) -> Plan:
    """A worker that checks the whole save file, then streams it into a new QEMU."""
    waker = Waker()

    def work(ctx: JobContext) -> DomainRef | None:
        with SaveFileReader(path, DRIVER_NAME, confinement=host.confinement) as reader:
            if saved_domain(reader) != config:
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

    return Plan(work, on_cancel=waker.wake)


def _load(
    ctx: JobContext, process: QemuProcess, reader: SaveFileReader, size: int, waker: Waker
) -> None:
    """Stream the image into the waiting QEMU and let the guest run."""
    monitor = process.monitor
    read_fd, write_fd = make_pipe()
    try:
        monitor.send_fd(read_fd, "virtjob-restore")
    finally:
        os.close(read_fd)
    feeder = SourceToPipe(
        write_fd, reader.image_chunks(), f"virtjob-restore-{process.domain}", waker.wake
    )
    feeder.start()
    try:
        monitor.execute("migrate-incoming", {"uri": "fd:virtjob-restore"})
        while True:
            # Once all is sent, QEMU only has the tail to load: look again soon.
            pause = FINISH_POLL if feeder.finished.is_set() else POLL
            _tick(ctx, waker, process, feeder, "restore", pause)
            ctx.update(processed=size + feeder.moved)
            if feeder.finished.is_set():
                status = str(_query(process, "query-status", "restore").get("status"))
                if status != "inmigrate":
                    break
        migration = _query(process, "query-migrate", "restore")
        if migration.get("status") != "completed":
            raise OperationFailedError(
                f"QEMU could not load the saved state of domain {process.domain!r}:"
                f" {migration.get('error-desc', migration.get('status'))}; {process.log_tail()}"
            )
        monitor.execute("cont")
    finally:
        feeder.stop()


# -- dump ----------------------------------------------------------------------------------


def dump_core(host: QemuHost, ref: DomainRef, path: str) -> Plan:
    """A worker that writes the guest's memory to `path` as an ELF core (dump-guest-memory)."""
    waker = Waker()

    def work(ctx: JobContext) -> None:
        _, process = host.running_process(ref, "dump")
        monitor = process.monitor
        prior = str(monitor.execute("query-status").get("status"))
        read_fd, write_fd = make_pipe()
        cancelled = False
        what = f"a core dump of domain {ref.name!r}"
        with AtomicFile(path, what=what, confinement=host.confinement) as out:
            try:
                monitor.send_fd(write_fd, "virtjob-dump")
            except BaseException:
                os.close(read_fd)
                raise
            finally:
                os.close(write_fd)
            pump = PipeToSink(read_fd, out.write, f"virtjob-dump-{ref.name}", waker.wake)
            pump.start()
            try:
                ctx.initialize(bounded=True)
                monitor.execute(
                    "dump-guest-memory",
                    {"paging": False, "protocol": "fd:virtjob-dump", "detach": True},
                )
                _follow_dump(ctx, process, pump, waker)
                out.commit()
            except _Cancelled:
                cancelled = True
            except BaseException:
                _abandon_dump(process, pump, prior)
                raise
            if cancelled:
                _abandon_dump(process, pump, prior)
        if cancelled:  # the partial file is gone: leaving the block removed it
            ctx.finish_cancel()

    return Plan(work, on_cancel=waker.wake)


def _follow_dump(ctx: JobContext, process: QemuProcess, pump: PipeToSink, waker: Waker) -> None:
    while True:
        _tick(ctx, waker, process, pump, "dump")
        info = _query(process, "query-dump", "dump")
        if info.get("total"):
            ctx.update(processed=int(info.get("completed", 0)), total=int(info["total"]))
        status = info.get("status")
        if status == "completed":
            if not pump.finished.wait(SETTLE_TIMEOUT) or pump.error is not None:
                raise _pump_failure(
                    pump.error or OSError("QEMU did not close the dump stream"),
                    process.domain,
                    "dump",
                )
            return
        if status == "failed":
            raise OperationFailedError(f"QEMU failed the dump of domain {process.domain!r}")


def _abandon_dump(process: QemuProcess, pump: PipeToSink, prior: str) -> None:
    """Break the dump stream off and wait until QEMU has put the guest back as it was."""
    pump.stop()
    if process.exited.is_set():
        return
    _settle(process, "query-dump", {"active"})
    wanted = {"running"} if prior == "running" else {prior}
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline and not process.exited.is_set():
        with contextlib.suppress(OperationFailedError):
            if str(process.monitor.execute("query-status").get("status")) in wanted:
                return
        time.sleep(POLL)  # QEMU resumes the guest on its own once the dump has unwound
