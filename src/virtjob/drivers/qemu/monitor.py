"""Talking QMP to one QEMU process, from ordinary threads.

`qemu.qmp` is an asyncio library. `EventLoopThread` runs one event loop in a daemon thread
for a whole host; `Monitor` wraps one `QMPClient` on that loop behind blocking calls with
timeouts, and turns the library's errors into `OperationFailedError`.

Every command a `Monitor` sends is logged at DEBUG on ``virtjob.qemu.qmp`` when it goes out
(``-> domain 'web': query-status {}``) and when it comes back, with how long it took and the
answer, QEMU's refusal, or why there was none (``<- domain 'web': query-status in 0.002 s:
{...}``): a hung or refused command shows in the log with what was asked. Nothing is
formatted when DEBUG is off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from qemu.qmp import ExecuteError, QMPClient, QMPError

from virtjob.errors import OperationFailedError

T = TypeVar("T")
COMMAND_TIMEOUT = 30.0
"""Seconds a QMP command may take before the monitor is considered hung."""
ANSWER_SHOWN = 400
"""Characters of an answer the debug log shows (a ``query-migrate`` answer runs long)."""

log = logging.getLogger("virtjob.qemu.qmp")
_DEBUG = logging.DEBUG


class EventLoopThread:
    """An asyncio event loop running in its own daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(
        self, coro: Coroutine[Any, Any, T], timeout: float | None, abort: Abort | None = None
    ) -> T:
        """Run `coro` on the loop and wait for its result.

        Raises `TimeoutError` after `timeout` seconds and `Interrupted` as soon as `abort` is
        set; either way the coroutine is cancelled.
        """
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        if abort is None:
            try:
                return future.result(timeout)
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise TimeoutError from None
        with abort.watch() as wake:
            future.add_done_callback(lambda _: wake.set())
            wake.wait(timeout)
        if future.done():
            return future.result()
        future.cancel()
        if abort.is_set():
            raise Interrupted
        raise TimeoutError


class _ClientLogger(logging.Logger):
    """The logger one `Monitor` gives its `QMPClient`: qemu.qmp's own messages, under its own
    logger name, except that what virtjob brought about on purpose is not reported as a
    problem. Warnings and errors are demoted to DEBUG when they are

    - an answer to a command we stopped waiting for ("Unknown ID": a cancel or a timeout
      abandons it on purpose; QEMU answers once it runs again), or
    - anything logged once the monitor's disconnect is expected (`Monitor.expect_disconnect`:
      virtjob is killing QEMU or asked it to quit, so a reset connection or a failed flush
      is how that ends, not an error).

    It is not registered with `logging` (one per QEMU process, none kept): whether a level is
    enabled is asked of qemu.qmp's registered logger, its parent, so level changes apply.
    """

    def __init__(self, parent: logging.Logger, monitor: Monitor) -> None:
        super().__init__(parent.name)
        self.parent = parent
        self._monitor = monitor

    def isEnabledFor(self, level: int) -> bool:
        """Whether `level` is enabled (asked of the registered parent: no stale cache)."""
        assert self.parent is not None
        return self.parent.isEnabledFor(level)

    def handle(self, record: logging.LogRecord) -> None:
        """Demote an expected warning or error to DEBUG (see the class docs), then log it."""
        if record.levelno > logging.DEBUG and (
            self._monitor.disconnect_expected or str(record.msg).startswith("Unknown ID")
        ):
            if not self.isEnabledFor(logging.DEBUG):
                return
            record.levelno = logging.DEBUG
            record.levelname = logging.getLevelName(logging.DEBUG)
        super().handle(record)


class RefusedError(OperationFailedError):
    """QEMU answered a command with an error (it is alive and talking)."""


class NoAnswerError(OperationFailedError):
    """QEMU did not answer a command in time: it is stopped, hung or very busy."""


class Interrupted(Exception):
    """A monitor call was cut short by its `Abort` (QEMU may still carry the command out)."""


class Abort:
    """A one-way flag that cuts short every monitor call waiting on it (a job's cancel).

    Thread-safe: `set` may be called from any thread, once or many times.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._waiters: set[threading.Event] = set()

    def set(self) -> None:
        """Raise the flag and wake every call waiting on it."""
        with self._lock:
            self._set = True
            waiters = list(self._waiters)
        for waiter in waiters:
            waiter.set()

    def is_set(self) -> bool:
        """Whether `set` has been called."""
        return self._set

    @contextlib.contextmanager
    def watch(self) -> Iterator[threading.Event]:
        """An event set when the flag is raised (already set if it is up)."""
        event = threading.Event()
        with self._lock:
            if self._set:
                event.set()
            self._waiters.add(event)
        try:
            yield event
        finally:
            with self._lock:
                self._waiters.discard(event)


class Monitor:
    """A QMP connection to one QEMU process over a connected unix socket.

    Every call raises `OperationFailedError` naming the domain when QEMU refuses a command,
    does not answer within `COMMAND_TIMEOUT`, or has gone away.
    """

    def __init__(self, loop: EventLoopThread, domain: str) -> None:
        self._loop = loop
        self._domain = domain
        self._client = QMPClient(domain)
        self._client.logger = _ClientLogger(self._client.logger, self)
        self._lock = threading.Lock()
        self.disconnect_expected = False
        """Set by `expect_disconnect`: the connection is about to end on purpose."""

    def expect_disconnect(self) -> None:
        """Say that the connection is about to end on purpose (virtjob kills QEMU or asked it
        to quit): qemu.qmp's complaints about it are then logged at DEBUG only."""
        self.disconnect_expected = True

    def connect(self, sock: socket.socket, timeout: float) -> None:
        """Greet QEMU over `sock` and negotiate capabilities."""
        started = time.monotonic()
        try:
            self._loop.run(self._client.connect(sock), timeout)
        except (QMPError, OSError, TimeoutError) as exc:
            self._log_end("connect", started, exc)
            raise OperationFailedError(
                f"QEMU for domain {self._domain!r} did not answer on its monitor: {exc}"
            ) from exc
        if log.isEnabledFor(_DEBUG):
            took = time.monotonic() - started
            log.debug(
                "<- domain %r: greeted, capabilities negotiated in %.3f s", self._domain, took
            )

    def execute(
        self,
        command: str,
        arguments: dict[str, object] | None = None,
        timeout: float = COMMAND_TIMEOUT,
        abort: Abort | None = None,
    ) -> Any:
        """Run a QMP command and return its answer.

        Raises `Interrupted` (not a `VirtError`) as soon as `abort` is set while waiting.
        """
        started = self._log_start(command, arguments)
        try:
            answer = self._loop.run(self._client.execute(command, arguments), timeout, abort)
        except ExecuteError as exc:
            self._log_end(command, started, exc)
            raise RefusedError(
                f"QEMU refused {command!r} for domain {self._domain!r}: {exc.error.error.desc}"
            ) from exc
        except TimeoutError as exc:
            self._log_end(command, started, exc)
            raise NoAnswerError(  # the TimeoutError says no more than this
                f"QEMU for domain {self._domain!r} did not answer {command!r} within {timeout} s"
            ) from None
        except (QMPError, OSError, EOFError) as exc:
            self._log_end(command, started, exc)
            raise OperationFailedError(
                f"lost the monitor of domain {self._domain!r} during {command!r}"
                f" (QEMU may have exited): {exc or type(exc).__name__}"
            ) from exc
        except Interrupted as exc:
            self._log_end(command, started, exc)
            raise
        self._log_end(command, started, None, answer)
        return answer

    def send_fd(self, fd: int, name: str, abort: Abort | None = None) -> None:
        """Hand QEMU a file descriptor it will know as `name` (QMP ``getfd``).

        Raises `Interrupted` as soon as `abort` is set while waiting.
        """

        async def send() -> None:
            self._client.send_fd_scm(fd)
            await self._client.execute("getfd", {"fdname": name})

        with self._lock:
            started = self._log_start("getfd", {"fdname": name, "(fd)": fd})
            try:
                self._loop.run(send(), COMMAND_TIMEOUT, abort)
            except (QMPError, OSError, EOFError, TimeoutError) as exc:
                self._log_end("getfd", started, exc)
                raise OperationFailedError(
                    f"could not pass a file to QEMU for domain {self._domain!r}: {exc}"
                ) from exc
            except Interrupted as exc:
                self._log_end("getfd", started, exc)
                raise
            self._log_end("getfd", started, None, {})

    def _log_start(self, command: str, arguments: dict[str, object] | None) -> float:
        """Log `command` going out (at DEBUG) and return when it did."""
        if log.isEnabledFor(_DEBUG):
            log.debug("-> domain %r: %s %s", self._domain, command, arguments or {})
        return time.monotonic()

    def _log_end(
        self, command: str, started: float, error: BaseException | None, answer: object = None
    ) -> None:
        """Log at DEBUG how `command`, sent at `started`, came back: its answer or `error`."""
        if not log.isEnabledFor(_DEBUG):
            return
        took = time.monotonic() - started
        if error is None:
            shown = repr(answer)
            if len(shown) > ANSWER_SHOWN:
                shown = f"{shown[:ANSWER_SHOWN]}... ({len(shown)} characters)"
            log.debug("<- domain %r: %s in %.3f s: %s", self._domain, command, took, shown)
            return
        if isinstance(error, ExecuteError):
            outcome = f"refused: {error.error.error.class_}: {error.error.error.desc}"
        elif isinstance(error, TimeoutError):
            outcome = "no answer in time"
        elif isinstance(error, Interrupted):
            outcome = "stopped waiting (cancelled); QEMU may still carry it out"
        else:
            outcome = f"failed: {type(error).__name__}: {error}"
        log.debug("<- domain %r: %s after %.3f s: %s", self._domain, command, took, outcome)

    def close(self) -> None:
        """Disconnect; harmless when QEMU has already gone."""
        self.expect_disconnect()
        # QEMU may be gone already; qemu.qmp can even trip its own assertions then.
        with contextlib.suppress(Exception):
            self._loop.run(self._client.disconnect(), 5.0)
