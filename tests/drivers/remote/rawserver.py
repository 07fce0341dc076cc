"""A scripted HTTP server on real sockets, for what a daemon will not do on demand.

`RawServer` accepts connections on a unix socket or on loopback TCP (with TLS if given a
server `ssl.SSLContext`) and runs the test's handler on each, in a thread, with a `Peer`: the
handler reads requests and writes whatever bytes the test wants (answers split at awkward
places, malformed HTTP, a connection closed at the worst moment). `Peer.send_drained` waits
until the client has read what was sent, so that the next bytes reach it in another read.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import socket
import ssl
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.daemon.conftest import SAFETY


@dataclass(frozen=True)
class Request:
    """One request as the server read it."""

    line: bytes
    """The request line, e.g. ``b"GET /v1/ok HTTP/1.1"``."""
    headers: dict[bytes, bytes]
    """Header names lower-cased."""
    body: bytes


class Peer:
    """One accepted connection, as a handler sees it."""

    def __init__(self, server: RawServer, sock: socket.socket, number: int) -> None:
        self.server = server
        self.sock = sock
        self.number = number
        """1 for the first connection the server accepted, 2 for the next..."""
        self._buffer = b""

    def read_request(self) -> Request | None:
        """The next request on this connection (recorded in `server.requests`), or None when
        the client closed it."""
        while b"\r\n\r\n" not in self._buffer:
            data = self.sock.recv(65536)
            if not data:
                return None
            self._buffer += data
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        line, *fields = head.split(b"\r\n")
        headers = {}
        for field in fields:
            name, _, value = field.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        while len(self._buffer) < length:
            data = self.sock.recv(65536)
            if not data:
                return None
            self._buffer += data
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        request = Request(line, headers, body)
        with self.server.lock:
            self.server.requests.append(request)
        return request

    def send(self, data: bytes) -> None:
        """Send `data` (all of it)."""
        self.sock.sendall(data)

    def send_drained(self, data: bytes) -> None:
        """Send `data` and wait until the client has read it all (unix sockets only), so
        that what is sent next arrives in another read."""
        self.sock.sendall(data)
        deadline = time.monotonic() + SAFETY
        queued = array.array("i", [0])
        while True:
            fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, queued, True)
            if queued[0] == 0:
                return
            assert time.monotonic() < deadline, "the client did not read what was sent"
            time.sleep(0.001)  # polling the send queue, bounded by the deadline

    def answer(self, status: str, body: bytes, *extra: str) -> None:
        """Send a complete answer with a Content-Length (and `extra` header lines)."""
        head = [f"HTTP/1.1 {status}", f"content-length: {len(body)}", *extra]
        self.send(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def wait_closed(self) -> bool:
        """Block until the client closes the connection: True, or sends more: False."""
        return not self.sock.recv(1)


Handler = Callable[[Peer], None]


class RawServer:
    """Runs `handler` on each accepted connection, one thread each; `close()` stops it all.

    Without `tls` and `tcp` it listens on the unix socket `path`; with either, on a loopback
    port. What handlers raise is kept in `errors`.
    """

    def __init__(
        self,
        handler: Handler,
        path: str,
        *,
        tcp: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.path = path
        self.tls = tls
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.errors: list[BaseException] = []
        self.accepted = 0
        self._peers: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closing = False
        if tcp or tls is not None:
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.bind(("127.0.0.1", 0))
            self.port = self.listener.getsockname()[1]
        else:
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(path)
            self.port = 0
        self.listener.listen(16)
        self._acceptor = threading.Thread(target=self._accept, name="test-raw-server")
        self._acceptor.start()

    def uri(self, host: str = "default", **params: str) -> str:
        """A remote-driver URI that reaches this server."""
        if self.port:
            scheme = "tls" if self.tls is not None else "tcp"
            base = f"test+{scheme}://127.0.0.1:{self.port}/{host}"
        else:
            base = f"test+unix:///{host}"
            params = {"socket": self.path, **params}
        query = "&".join(f"{name}={value}" for name, value in params.items())
        return base + (f"?{query}" if query else "")

    def lines(self) -> list[bytes]:
        """The request line of every request read so far."""
        with self.lock:
            return [request.line for request in self.requests]

    def _accept(self) -> None:
        while True:
            sock, _ = self.listener.accept()
            with self.lock:
                if self._closing:
                    sock.close()
                    return
                self.accepted += 1
                number = self.accepted
                self._peers.append(sock)
                thread = threading.Thread(
                    target=self._serve, args=(sock, number), name=f"test-raw-peer-{number}"
                )
                self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        try:
            sock.settimeout(SAFETY)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
            self.handler(Peer(self, sock, number))
        except BaseException as exc:
            with self.lock:
                self.errors.append(exc)
        finally:
            sock.close()

    def close(self) -> None:
        """Stop accepting, shut every connection down and wait for the handlers (once)."""
        with self.lock:
            if self._closing:
                return
            self._closing = True
            peers = list(self._peers)
        for sock in peers:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        family = socket.AF_INET if self.port else socket.AF_UNIX
        with socket.socket(family, socket.SOCK_STREAM) as wake:
            wake.connect(("127.0.0.1", self.port) if self.port else self.path)
        self._acceptor.join(SAFETY)
        for thread in self._threads:
            thread.join(SAFETY)
        self.listener.close()
