"""Byte pumps between QEMU and files: pipes QEMU writes its streams into, or reads them from.

Each pump runs in its own thread, owns its end of the pipe, and closes it when it stops, so
stopping a pump is also how a driver breaks QEMU's side of a stream off (QEMU then sees EPIPE
or EOF). Waits use ``poll()`` with a short timeout so a stop request is seen at once even when
QEMU is not moving bytes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import threading
from collections.abc import Callable, Iterable

CHUNK = 1 << 20
PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = 1031
_POLL_MS = 50


def make_pipe() -> tuple[int, int]:
    """A pipe with close-on-exec ends and, where allowed, a 1 MiB buffer."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError):  # a smaller pipe is slower, not wrong
        fcntl.fcntl(write_fd, _F_SETPIPE_SZ, PIPE_SIZE)
    return read_fd, write_fd


class Pump:
    """A thread moving bytes through one end of a pipe; see the module docstring."""

    def __init__(self, fd: int, name: str, on_finish: Callable[[], None] | None) -> None:
        self.fd = fd
        self._on_finish = on_finish
        self.moved = 0
        self.error: Exception | None = None
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self._pump()
        except Exception as exc:  # reported to the worker, which fails the job with it
            self.error = exc
        finally:
            os.close(self.fd)
            self.finished.set()
            if self._on_finish is not None:
                self._on_finish()

    def _pump(self) -> None:
        raise NotImplementedError

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop pumping, close the pipe end and wait (up to `timeout`) for the thread."""
        self._stop.set()
        self._thread.join(timeout)


class PipeToSink(Pump):
    """Reads a pipe until EOF, handing each chunk to `sink`; an error from `sink` stops it.

    `on_finish()` is called from the pump's thread once it has stopped, for whatever reason.
    """

    def __init__(
        self,
        fd: int,
        sink: Callable[[bytes], None],
        name: str,
        on_finish: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(fd, name, on_finish)
        self._sink = sink
        self.eof = False

    def _pump(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while not self.stopping:
            if not poller.poll(_POLL_MS):
                continue
            data = os.read(self.fd, CHUNK)
            if not data:
                self.eof = True
                return
            self._sink(data)
            self.moved += len(data)


class SourceToPipe(Pump):
    """Writes every chunk of `source` into a pipe, then closes it (EOF for the reader).

    `on_finish()` is called from the pump's thread once it has stopped, for whatever reason;
    `on_moved(moved)` after every write, with the bytes written so far (progress). The pipe end
    is made non-blocking: a stop is seen at once even when QEMU has stopped reading.
    """

    def __init__(
        self,
        fd: int,
        source: Iterable[bytes],
        name: str,
        on_finish: Callable[[], None] | None = None,
        on_moved: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(fd, name, on_finish)
        os.set_blocking(fd, False)  # a blocking write of a chunk waits for QEMU to read it all
        self._source = source
        self._on_moved = on_moved
        self.complete = False

    def _pump(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLOUT)
        for chunk in self._source:
            view = memoryview(chunk)
            while view:
                if self.stopping:
                    return
                if not poller.poll(_POLL_MS):
                    continue
                try:
                    written = os.write(self.fd, view)
                except BlockingIOError:
                    continue
                except BrokenPipeError:  # the same errno, said plainly: no cause needed
                    raise OSError(errno.EPIPE, "QEMU stopped reading the stream") from None
                view = view[written:]
                self.moved += written
                if self._on_moved is not None:
                    self._on_moved(self.moved)
        self.complete = True
