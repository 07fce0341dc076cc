"""Running virtjobd: uvicorn on our own sockets, with graceful shutdown on SIGTERM/SIGINT.

On the first SIGTERM or SIGINT the daemon stops taking new jobs, cancels the running ones and
tells uvicorn to stop (it closes the listening socket, then lets in-flight requests finish;
event streams and long polls end as their jobs reach a final state). Once uvicorn is done,
`Service.finish_shutdown` waits up to the grace period for the jobs to end and records their
final state; then the unix socket file is removed and `run` returns 0. A second signal during
shutdown makes uvicorn drop the remaining connections at once.

**Limits for peers that never authenticate.** The token is checked once a request's headers
are in, so until then a peer costs a file descriptor and nothing else stops it. uvicorn
closes only idle keep-alive connections, so the HTTP protocol classes here add two limits:

- a *request timeout* (``--header-timeout``): from the moment the daemon expects a request
  (a new connection, or the first byte of the next one after an answer), the client has that
  many seconds to send all of it (request line, headers and body); else the connection is
  closed. The clock does not restart with each byte (a trickle cannot hold it), and it does
  not run while the daemon answers (long polls and event streams last as long as they need);
- a *connection limit* (``--max-connections``): a connection beyond it is answered 503 at once
  and closed. The limit is lowered to fit the process's file-descriptor limit if needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import resource
import signal
import socket
import sys
import threading
from collections.abc import Generator
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import create_app
from .listen import ListenSpec, open_socket, remove_socket, socket_inode
from .service import Service

log = logging.getLogger("virtjob.daemon")

CONNECTION_GRACE = 5
"""Seconds uvicorn gives in-flight requests once shutdown begins."""


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


HTTP_IMPL = "httptools" if _have("httptools") else "h11"
"""uvicorn's HTTP parser: httptools (C, several times faster) when installed, else h11."""
LOOP_IMPL = "uvloop" if _have("uvloop") else "asyncio"
"""The event loop: uvloop (libuv) when installed, else the standard asyncio loop."""
KEEP_ALIVE = 30
"""Seconds an idle keep-alive connection stays open after an answer."""
FD_RESERVE = 128
"""File descriptors kept free of connections: database, sockets, save files, QEMU."""


class _Config(uvicorn.Config):
    """uvicorn's configuration plus the daemon's connection limits (read by `_Guard`)."""

    def __init__(
        self, app: Any, *, header_timeout: float, max_connections: int, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout = header_timeout
        self.max_connections = max_connections


REFUSAL_LOG_INTERVAL = 10.0
"""Seconds between two warnings about connections refused over the limit."""
_last_refusal_log = float("-inf")


class _Guard:
    """One connection's request deadline and admission (see the module docs)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, config: uvicorn.Config) -> None:
        self.loop = loop
        self.timeout = getattr(config, "header_timeout", None)
        self.limit = getattr(config, "max_connections", None)
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    def admit(self, transport: asyncio.Transport, connections: int) -> bool:
        """Keep the new connection, or answer 503 and close it when over the limit."""
        self.transport = transport
        if self.limit is None or connections <= self.limit:
            return True
        global _last_refusal_log  # noqa: PLW0603 - one rate limit for the whole process
        now = self.loop.time()
        if now - _last_refusal_log >= REFUSAL_LOG_INTERVAL:  # a flood must not flood the log
            _last_refusal_log = now
            log.warning(
                "refusing connections: %d open, the most --max-connections allows", self.limit
            )
        body = json.dumps(
            {
                "code": "operation-invalid",
                "message": f"virtjobd serves at most {self.limit} connections at once"
                f" (--max-connections) and has that many; close idle ones or retry later",
            }
        ).encode()
        head = (
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        transport.write(head + body)
        transport.close()
        return False

    def update(self, owes: bool) -> None:
        """Run the clock while the client owes (part of) a request, stop it otherwise."""
        transport = self.transport
        if transport is None or transport.is_closing():
            owes = False
        if not owes:
            self.stop()
        elif self.timer is None and self.timeout is not None:
            self.timer = self.loop.call_later(self.timeout, self._expired)

    def stop(self) -> None:
        """Stop the clock (the connection is gone, or the request is in)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        self.timer = None
        if self.transport is not None and not self.transport.is_closing():
            log.info("closed a connection that sent no whole request in %s s", self.timeout)
            self.transport.close()


if HTTP_IMPL == "httptools":
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol with the request deadline and connection limit."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._guard = _Guard(self.loop, self.config)
            self._begun = 0
            self._complete = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            """Count the connection (503 over the limit) and start the request clock."""
            super().connection_made(transport)
            if self._guard.admit(transport, len(self.connections)):
                self._check()

        def connection_lost(self, exc: Exception | None) -> None:
            """Stop the clock."""
            self._guard.stop()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            """Parse, then run the clock if a request is still incomplete."""
            super().data_received(data)
            self._check()

        def on_message_begin(self) -> None:
            """A request starts."""
            self._begun += 1
            super().on_message_begin()

        def on_message_complete(self) -> None:
            """A request is in (headers and body)."""
            self._complete += 1
            super().on_message_complete()

        def on_response_complete(self) -> None:
            """An answer is out: the next request is owed once the keep-alive timer is off."""
            super().on_response_complete()
            self._check()

        def _check(self) -> None:
            answering = self.cycle is not None and not self.cycle.response_complete
            idle = not answering and self.timeout_keep_alive_task is None
            self._guard.update(self._begun > self._complete or idle)

    GUARDED_PROTOCOL: type[asyncio.Protocol] = GuardedHttpToolsProtocol
else:  # pragma: no cover - httptools is a dependency

    class GuardedH11Protocol(H11Protocol):
        """uvicorn's h11 protocol with the request deadline and connection limit."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._guard = _Guard(self.loop, self.config)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            """Count the connection (503 over the limit) and start the request clock."""
            super().connection_made(transport)
            if self._guard.admit(transport, len(self.connections)):
                self._check()

        def connection_lost(self, exc: Exception | None) -> None:
            """Stop the clock."""
            self._guard.stop()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            """Parse, then run the clock if a request is still incomplete."""
            super().data_received(data)
            self._check()

        def on_response_complete(self) -> None:
            """An answer is out: the next request is owed once the keep-alive timer is off."""
            super().on_response_complete()
            self._check()

        def _check(self) -> None:
            theirs = self.conn.their_state
            answering = self.cycle is not None and not self.cycle.response_complete
            idle = theirs is h11.IDLE and not answering and self.timeout_keep_alive_task is None
            self._guard.update(theirs is h11.SEND_BODY or idle)

    GUARDED_PROTOCOL = GuardedH11Protocol


def fit_connections(wanted: int) -> int:
    """The connection limit the process's file-descriptor limit allows, raising it if needed.

    Raises the soft ``RLIMIT_NOFILE`` towards the hard one so that `wanted` connections fit
    with `FD_RESERVE` to spare; if they still do not, returns (and logs) the lower limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < need:
        fitted = max(1, soft - FD_RESERVE)
        log.warning(
            "--max-connections %d does not fit the file-descriptor limit %d; serving at most %d",
            wanted,
            soft,
            fitted,
        )
        return fitted
    return wanted


class _Server(uvicorn.Server):
    """uvicorn's server with signals routed to the service's shutdown instead of re-raised."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Handle SIGTERM/SIGINT on the event loop: begin a graceful shutdown."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: int) -> None:
        if self.should_exit:
            self.force_exit = True
            return
        log.info("received %s: shutting down", signal.Signals(sig).name)
        self.should_exit = True
        # Cancelling runs driver hooks that may block briefly: keep it off the event loop.
        threading.Thread(
            target=self.service.begin_shutdown, name="virtjobd-shutdown", daemon=True
        ).start()


def run(
    service: Service,
    spec: ListenSpec,
    *,
    allow_any: bool = False,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    log_level: str = "warning",
) -> int:
    """Serve the API until a signal; return the exit status (0 after a clean shutdown).

    Raises `InvalidArgError`/`OperationInvalidError` if the socket cannot be opened.
    """
    sock = open_socket(spec, allow_any=allow_any)
    inode = socket_inode(spec)
    try:
        config = _Config(
            create_app(service),
            header_timeout=service.settings.header_timeout,
            max_connections=fit_connections(service.settings.max_connections),
            http=GUARDED_PROTOCOL,
            loop=LOOP_IMPL,
            lifespan="on",
            access_log=False,
            log_level=log_level,
            ssl_certfile=tls_cert,
            ssl_keyfile=tls_key,
            timeout_graceful_shutdown=CONNECTION_GRACE,
            timeout_keep_alive=KEEP_ALIVE,
            server_header=False,
        )
        server = _Server(config, service)
        scheme = "https" if tls_cert else "http"
        where = spec
        if spec.kind == "tcp":  # show the real port when 0 asked for any free one
            where = ListenSpec("tcp", host=spec.host, port=sock.getsockname()[1])
        print(f"virtjobd: serving {scheme} on {where}", file=sys.stderr, flush=True)
        server.run(sockets=[sock])
    finally:
        _close(sock)
        remove_socket(spec, inode)
        clean = service.finish_shutdown()
    log.info("virtjobd stopped%s", "" if clean else " (some jobs did not stop in time)")
    return 0


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
