"""Talking QMP to one QEMU process, from ordinary threads.

`qemu.qmp` is an asyncio library. `EventLoopThread` runs one event loop in a daemon thread
for a whole host; `Monitor` wraps one `QMPClient` on that loop behind blocking calls with
timeouts, and turns the library's errors into `OperationFailedError`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from qemu.qmp import ExecuteError, QMPClient, QMPError

from virtjob.errors import OperationFailedError

T = TypeVar("T")
COMMAND_TIMEOUT = 30.0
"""Seconds a QMP command may take before the monitor is considered hung."""


class EventLoopThread:
    """An asyncio event loop running in its own daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        """Run `coro` on the loop and wait for its result; `TimeoutError` after `timeout`."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError from None


class Monitor:
    """A QMP connection to one QEMU process over a connected unix socket.

    Every call raises `OperationFailedError` naming the domain when QEMU refuses a command,
    does not answer within `COMMAND_TIMEOUT`, or has gone away.
    """

    def __init__(self, loop: EventLoopThread, domain: str) -> None:
        self._loop = loop
        self._domain = domain
        self._client = QMPClient(domain)
        self._lock = threading.Lock()

    def connect(self, sock: socket.socket, timeout: float) -> None:
        """Greet QEMU over `sock` and negotiate capabilities."""
        try:
            self._loop.run(self._client.connect(sock), timeout)
        except (QMPError, OSError, TimeoutError) as exc:
            raise OperationFailedError(
                f"QEMU for domain {self._domain!r} did not answer on its monitor: {exc}"
            ) from None

    def execute(
        self,
        command: str,
        arguments: dict[str, object] | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> Any:
        """Run a QMP command and return its answer."""
        try:
            return self._loop.run(self._client.execute(command, arguments), timeout)
        except ExecuteError as exc:
            raise OperationFailedError(
                f"QEMU refused {command!r} for domain {self._domain!r}: {exc.error.error.desc}"
            ) from None
        except TimeoutError:
            raise OperationFailedError(
                f"QEMU for domain {self._domain!r} did not answer {command!r} within {timeout} s"
            ) from None
        except (QMPError, OSError, EOFError) as exc:
            raise OperationFailedError(
                f"lost the monitor of domain {self._domain!r} during {command!r}"
                f" (QEMU may have exited): {exc or type(exc).__name__}"
            ) from None

    def send_fd(self, fd: int, name: str) -> None:
        """Hand QEMU a file descriptor it will know as `name` (QMP ``getfd``)."""

        async def send() -> None:
            self._client.send_fd_scm(fd)
            await self._client.execute("getfd", {"fdname": name})

        with self._lock:
            try:
                self._loop.run(send(), COMMAND_TIMEOUT)
            except (QMPError, OSError, EOFError, TimeoutError) as exc:
                raise OperationFailedError(
                    f"could not pass a file to QEMU for domain {self._domain!r}: {exc}"
                ) from None

    def close(self) -> None:
        """Disconnect; harmless when QEMU has already gone."""
        # QEMU may be gone already; qemu.qmp can even trip its own assertions then.
        with contextlib.suppress(Exception):
            self._loop.run(self._client.disconnect(), 5.0)
