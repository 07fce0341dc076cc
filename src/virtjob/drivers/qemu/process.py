"""One QEMU process: launching it, its monitor, noticing its exit, stopping it.

Processes are forked from one long-lived launcher thread per host and run under
``setpriv --pdeathsig KILL``, so the kernel kills every QEMU when the process that owns it
dies, however it dies: no stray QEMU outlives its host.

Each start and end of a QEMU is logged on ``virtjob.qemu``: the start at INFO (its command
line at DEBUG), the end at INFO with its status and who ended it, or at WARNING when it
ended on its own with a failure status (the domain is then crashed; its log file says why).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import BinaryIO

from virtjob.drivers.qemu.monitor import EventLoopThread, Monitor
from virtjob.errors import OperationFailedError

log = logging.getLogger("virtjob.qemu")
_Popen = subprocess.Popen[bytes]

CONNECT_TIMEOUT = 15.0
"""Seconds a new QEMU has to greet us on its monitor."""


class Launcher:
    """Forks child processes from one long-lived daemon thread (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self._requests: SimpleQueue[tuple[Callable[[], _Popen], concurrent.futures.Future[_Popen]]]
        self._requests = SimpleQueue()
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        while True:
            start, future = self._requests.get()
            try:
                future.set_result(start())
            except BaseException as exc:
                future.set_exception(exc)

    def popen(self, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """`subprocess.Popen(argv, **kwargs)`, run in the launcher thread."""
        future: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
        self._requests.put((lambda: subprocess.Popen(argv, **kwargs), future))  # type: ignore[call-overload]
        return future.result()


_SETPRIV = shutil.which("setpriv")


def open_log(path: str, domain: str) -> BinaryIO:
    """Open QEMU's log file `path` for appending (created 0600), never through a symlink.

    Raises `OperationFailedError` naming the domain when it cannot be opened, e.g. because a
    symlink was planted at `path` (remove it; the driver only ever writes a regular file
    there).
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        hint = (
            "; it is a symlink: remove it, QEMU's log is only ever written as a regular file"
            if exc.errno == errno.ELOOP
            else ""
        )
        raise OperationFailedError(
            f"cannot start QEMU for domain {domain!r}: cannot open its log {path}:"
            f" {exc.strerror}{hint}"
        ) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OperationFailedError(
                f"cannot start QEMU for domain {domain!r}: its log {path} is not a regular"
                f" file; remove it"
            )
        os.set_blocking(fd, True)
        return open(fd, "ab")
    except BaseException:
        os.close(fd)
        raise


class QemuProcess:
    """A running QEMU for one domain.

    `on_exit(process)` is called once, from a watcher thread, when the process ends;
    `expected_exit` tells whether virtjob itself ended it (`kill`: destroy, a forced shutdown;
    `quit`: after a save). Asking the guest to power off does not set it: a guest that obeys
    makes QEMU exit with status 0, and a QEMU that dies otherwise has crashed.
    `ended` is set as soon as the process is gone; `exited` once `on_exit` has run too, so
    whoever waits for `exited` sees the host's bookkeeping already updated. Never wait for
    `exited` while holding a lock `on_exit` takes.
    """

    def __init__(
        self,
        domain: str,
        proc: subprocess.Popen[bytes],
        monitor: Monitor,
        log_path: str,
        on_exit: Callable[[QemuProcess], None],
    ) -> None:
        self.domain = domain
        self.proc = proc
        self.monitor = monitor
        self.log_path = log_path
        self.expected_exit = False
        self.kill_reason: str | None = None
        """Why virtjob killed this QEMU (e.g. "the domain was destroyed"), for job errors."""
        self.log_offset = 0
        """Where this process's own output starts in its (shared, appended) log file."""
        self.unwinding: str | None = None
        """"save" or "dump" while QEMU may still be unwinding one whose undo gave up on it
        (QEMU did not answer then); the next save or dump waits for it first. Set and cleared
        by the job workers (one job per domain at a time)."""
        self.ended = threading.Event()
        self.exited = threading.Event()
        self._on_exit = on_exit
        threading.Thread(target=self._watch, name=f"qemu-watch-{domain}", daemon=True).start()

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has ended (negative: killed by that signal)."""
        return self.proc.returncode

    @classmethod
    def launch(
        cls,
        domain: str,
        argv_for: Callable[[int], list[str]],
        *,
        launcher: Launcher,
        loop: EventLoopThread,
        log_path: str,
        on_exit: Callable[[QemuProcess], None],
        pass_fds: tuple[int, ...] = (),
    ) -> QemuProcess:
        """Start QEMU with the command line `argv_for(monitor_fd)` and connect its monitor.

        Raises `OperationFailedError` with the end of QEMU's log if it fails to start.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            argv = argv_for(theirs.fileno())
            if _SETPRIV is not None:
                argv = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]
            with open_log(log_path, domain) as log_file:
                log_file.write(f"--- {' '.join(argv)}\n".encode())
                log_file.flush()
                log_offset = log_file.tell()
                try:
                    proc = launcher.popen(
                        argv,
                        pass_fds=(theirs.fileno(), *pass_fds),
                        stdin=subprocess.DEVNULL,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                except OSError as exc:
                    raise OperationFailedError(
                        f"cannot start QEMU for domain {domain!r}: {exc.strerror}"
                    ) from exc
        except BaseException:
            ours.close()  # no QEMU: our end has nobody to talk to
            raise
        finally:
            theirs.close()
        log.info("started QEMU for domain %r (pid %d)", domain, proc.pid)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("QEMU command line of domain %r: %s", domain, " ".join(argv))
        monitor = Monitor(loop, domain)
        process = cls(domain, proc, monitor, log_path, on_exit)
        process.log_offset = log_offset
        try:
            monitor.connect(ours, CONNECT_TIMEOUT)
        except OperationFailedError as exc:
            process.kill()
            raise OperationFailedError(
                f"QEMU for domain {domain!r} failed to start: {process.log_tail()}"
            ) from exc
        return process

    def _watch(self) -> None:
        self.proc.wait()
        self._log_end()
        self.ended.set()
        self.monitor.close()
        try:
            self._on_exit(self)
        except Exception:
            log.exception("exit handler of domain %s raised", self.domain)
        finally:
            self.exited.set()

    def _log_end(self) -> None:
        """Log how this QEMU ended: INFO, or WARNING for a failure virtjob did not cause."""
        status = self.proc.returncode
        how = f"status {status}"
        if status is not None and status < 0:
            with contextlib.suppress(ValueError):
                how = f"killed by {signal.Signals(-status).name}"
        if self.expected_exit:
            why = f": {self.kill_reason}" if self.kill_reason else ""
            log.info(
                "QEMU of domain %r (pid %d) ended (%s) as virtjob asked%s",
                self.domain,
                self.pid,
                how,
                why,
            )
        elif status == 0:
            log.info("QEMU of domain %r (pid %d) exited (status 0)", self.domain, self.pid)
        else:
            log.warning(
                "QEMU of domain %r (pid %d) ended on its own (%s): the domain crashed;"
                " see its log %s",
                self.domain,
                self.pid,
                how,
                self.log_path,
            )

    def kill(self, reason: str | None = None) -> None:
        """Kill QEMU at once (even a stopped or hung one) and wait for it to be gone.

        `reason` (e.g. "the domain was destroyed") is what a job that was using this QEMU
        reports as the cause of its failure. Never call it holding a lock `on_exit` takes.
        """
        self.send_kill(reason)
        self.proc.wait()
        self.exited.wait()

    def send_kill(self, reason: str | None = None) -> None:
        """Send QEMU SIGKILL and return at once (see `kill`); safe under any lock."""
        self.expected_exit = True
        self.monitor.expect_disconnect()
        if reason is not None and self.kill_reason is None:
            self.kill_reason = reason
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
                os.kill(self.proc.pid, signal.SIGKILL)

    def quit(self, timeout: float = 10.0) -> None:
        """Ask QEMU to exit (QMP ``quit``); kill it if it has not after `timeout` seconds."""
        self.expected_exit = True
        self.monitor.expect_disconnect()
        with contextlib.suppress(OperationFailedError):  # the monitor closing is how quit ends
            self.monitor.execute("quit", timeout=timeout)
        if not self.exited.wait(timeout):
            self.kill()

    def stopped(self) -> bool:
        """True while the process is stopped by a signal (SIGSTOP, a debugger): it cannot answer."""
        try:
            with open(f"/proc/{self.proc.pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            return False
        return bool(fields) and fields[0] in (b"T", b"t")

    def log_tail(self, lines: int = 5) -> str:
        """The last lines this QEMU printed to its log, for error messages."""
        try:
            fd = os.open(self.log_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with open(fd, "rb") as log_file:
                log_file.seek(max(self.log_offset, log_file.seek(0, os.SEEK_END) - 4096))
                text = log_file.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"(its log {self.log_path} cannot be read: {exc.strerror})"
        tail = [line for line in text.splitlines() if line and not line.startswith("--- ")]
        if not tail:
            return f"it wrote nothing to its log {self.log_path}"
        return " | ".join(tail[-lines:])
