"""Running virtjobd: uvicorn on our own sockets, with graceful shutdown on SIGTERM/SIGINT.

On the first SIGTERM or SIGINT the daemon stops taking new jobs, cancels the running ones and
tells uvicorn to stop (it closes the listening socket, then lets in-flight requests finish;
event streams and long polls end as their jobs reach a final state). Once uvicorn is done,
`Service.finish_shutdown` waits up to the grace period for the jobs to end and records their
final state; then the unix socket file is removed and `run` returns 0. A second signal during
shutdown makes uvicorn drop the remaining connections at once.

**Limits for peers that never authenticate.** The token is checked once a request's headers
are in, so until then a peer costs a file descriptor and nothing else stops it. uvicorn
closes only idle keep-alive connections, so the HTTP protocol here adds two limits:

- a *request timeout* (``--header-timeout``): from the moment the daemon expects a request
  (a new connection, or the first byte of the next one after an answer), the client has that
  many seconds to send all of it (request line, headers and body); else the connection is
  closed. The clock does not restart with each byte (a trickle cannot hold it), and it does
  not run while the daemon answers (long polls and event streams last as long as they need);
- a *connection limit* (``--max-connections``): a connection beyond it is answered 503 at once
  and closed. The limit is lowered to fit the process's file-descriptor limit if needed.

Both apply from the moment a TCP connection is accepted, TLS or not. asyncio (and uvicorn on
it) hands a TLS connection to the HTTP protocol only once its handshake is done, and bounds a
handshake by 60 s only; so on a TLS listener the daemon accepts connections itself
(`_Server`): each is counted from its accept (a `_Handshake` stands for it among uvicorn's
connections; over the limit it is closed at once, as a 503 would need a handshake first),
its handshake (``loop.connect_accepted_socket``) must end within the request timeout, and
the first request's clock keeps running from the accept.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib.util
import logging
import resource
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Generator
from http import HTTPStatus
from typing import Any, cast

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from virtjob.errors import InvalidArgError, VirtError

from .answers import TooManyConnectionsError, error_answer
from .app import create_app
from .listen import BACKLOG, ListenSpec, open_socket, remove_socket, socket_inode
from .service import Service

log = logging.getLogger("virtjob.daemon")

CONNECTION_GRACE = 5
"""Seconds uvicorn gives in-flight requests once shutdown begins."""


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


HTTP_IMPL = "httptools"
"""uvicorn's HTTP parser: httptools (C), a dependency; the connection limits are built on it."""
LOOP_IMPL = "uvloop" if _have("uvloop") else "asyncio"
"""The event loop: uvloop (libuv) when installed, else the standard asyncio loop."""
KEEP_ALIVE = 30
"""Seconds an idle keep-alive connection stays open after an answer."""
FD_RESERVE = 128
"""File descriptors kept free of connections: database, sockets, save files, QEMU."""


class _Config(uvicorn.Config):
    """uvicorn's configuration plus the daemon's connection limits and TLS context."""

    def __init__(
        self,
        app: Any,
        *,
        header_timeout: float,
        max_connections: int,
        tls: ssl.SSLContext | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.tls = tls


REFUSAL_LOG_INTERVAL = 10.0
"""Seconds between two warnings about connections refused over the limit."""
_last_refusal_log = float("-inf")


def _over_limit(loop: asyncio.AbstractEventLoop, config: _Config, connections: int) -> bool:
    """True when `connections` (the new one included) exceed ``--max-connections``.

    Logs a warning then, at most once per `REFUSAL_LOG_INTERVAL`: a flood must not flood the
    log.
    """
    if connections <= config.max_connections:
        return False
    global _last_refusal_log  # noqa: PLW0603 - one rate limit for the whole process
    now = loop.time()
    if now - _last_refusal_log >= REFUSAL_LOG_INTERVAL:
        _last_refusal_log = now
        log.warning(
            "refusing connections: %d open, the most --max-connections allows",
            config.max_connections,
        )
    return True


def _refusal(config: _Config) -> bytes:
    """The 503 answer for a connection over the limit (written on the connection itself,
    before any HTTP protocol runs; the body is `error_answer`'s, as every error's)."""
    return _closing_answer(
        TooManyConnectionsError(
            f"virtjobd serves at most {config.max_connections} connections at once"
            f" (--max-connections) and has that many; close idle ones or retry later"
        )
    )


def _unreadable(exc: BaseException | None) -> bytes:
    """The 400 answer for a request the HTTP parser refused with `exc` (a malformed request
    line or header: see `GuardedHttpToolsProtocol.send_400_response`)."""
    reason = str(exc) if exc is not None else "it could not be parsed"
    if isinstance(exc, httptools.HttpParserCallbackError) and exc.__context__ is not None:
        reason = str(exc.__context__)  # what uvicorn's callback refused, not "callback error"
    return _closing_answer(
        InvalidArgError(
            f"malformed HTTP request ({reason.rstrip('.')}): virtjobd reads HTTP/1.1 requests"
            f" with a method of the API, a percent-encoded ASCII path and well-formed headers;"
            f" see /openapi.json for the routes of this API"
        )
    )


def _closing_answer(error: VirtError) -> bytes:
    """The whole HTTP answer to `error` (`error_answer`'s status and body), for a connection
    closed right after it."""
    status, body, _headers = error_answer(error)
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n" % (
        status,
        HTTPStatus(status).phrase.encode(),
    )
    return head + b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body) + body


def _daemon_config(config: uvicorn.Config) -> _Config:
    if not isinstance(config, _Config):  # pragma: no cover - `run` always makes one
        raise TypeError("virtjobd's protocols need the daemon's configuration (_Config)")
    return config


class _Clock:
    """One connection's request deadline (see the module docs)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, timeout: float, since: float | None
    ) -> None:
        self.loop = loop
        self.timeout = timeout
        self.since = since
        """When the first request's clock started, if before the HTTP protocol (TLS)."""
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    def update(self, owes: bool) -> None:
        """Run the clock while the client owes (part of) a request, stop it otherwise."""
        transport = self.transport
        if transport is None or transport.is_closing():
            owes = False
        if not owes:
            self.stop()
        elif self.timer is None:
            since, self.since = self.since, None
            start = self.loop.time() if since is None else since
            self.timer = self.loop.call_at(start + self.timeout, self._expired)

    def stop(self) -> None:
        """Stop the clock (the connection is gone, or the request is in)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        self.timer = None
        if self.transport is not None and not self.transport.is_closing():
            log.info("closed a connection that sent no whole request in %s s", self.timeout)
            # Owed nothing: dropped without TLS's closing handshake (a peer could stall it).
            self.transport.abort()


class _Handshake:
    """A TLS connection accepted and not yet handed to the HTTP protocol.

    It stands among uvicorn's connections meanwhile, so the connection limit counts it and
    uvicorn's graceful shutdown drops it (`shutdown`).
    """

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None

    def shutdown(self) -> None:
        """Abandon the handshake: the connection is closed."""
        if self.task is not None:
            self.task.cancel()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the request deadline and connection limit.

    `since` and `handshake` are for a TLS connection the daemon has already counted: the
    loop time of its accept, when its first request's clock started, and what stood for it
    among the connections during its handshake.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        since: float | None = None,
        handshake: _Handshake | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = _daemon_config(config)
        self._clock = _Clock(self.loop, self._limits.header_timeout, since)
        self._handshake = handshake
        self._begun = 0
        self._complete = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the connection (503 over the limit) and start the request clock."""
        admitted = self._handshake is not None
        if self._handshake is not None:  # counted since its accept: it takes over that place
            cast(set[Any], self.connections).discard(self._handshake)
            self._handshake = None
        super().connection_made(transport)
        self._clock.transport = transport
        if not admitted and _over_limit(self.loop, self._limits, len(self.connections)):
            transport.write(_refusal(self._limits))
            transport.close()
            return
        self._check()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock."""
        self._clock.stop()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse, then run the clock if a request is still incomplete."""
        super().data_received(data)
        self._check()

    def send_400_response(self, msg: str) -> None:  # noqa: ARG002 - ours says why
        """Answer a request the HTTP parser refused (uvicorn calls this while handling the
        parser's error) in the API's error shape, not uvicorn's plain text, and close."""
        self.transport.write(_unreadable(sys.exception()))
        self.transport.close()

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
        self._clock.update(self._begun > self._complete or idle)


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


ACCEPT_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
"""Accept errors that mean "out of resources": accepting pauses for `ACCEPT_PAUSE` then."""
ACCEPT_PAUSE = 1.0
"""Seconds the TLS listener stops accepting after running out of descriptors or memory."""


class _Server(uvicorn.Server):
    """uvicorn's server with signals routed to the service's shutdown instead of re-raised.

    On a TLS listener it accepts the connections itself (see the module docs); uvicorn
    serves them once their handshake is done.
    """

    def __init__(self, config: _Config, service: Service, listener: socket.socket) -> None:
        super().__init__(config)
        self.service = service
        self.limits = config
        self.listener = listener
        self.accepting = False

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

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving: uvicorn accepts plain connections, the daemon TLS ones."""
        if self.limits.tls is None:
            await super().startup(sockets)
            return
        await super().startup([])  # the application and uvicorn's state, no listener
        self._accept_again()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, then let uvicorn end the connections (handshakes are dropped)."""
        self._stop_accepting()
        await super().shutdown(sockets)

    def _accept_again(self) -> None:
        if not self.accepting and not self.should_exit:
            asyncio.get_running_loop().add_reader(self.listener.fileno(), self._accept)
            self.accepting = True

    def _stop_accepting(self) -> None:
        if self.accepting:
            asyncio.get_running_loop().remove_reader(self.listener.fileno())
            self.accepting = False

    def _accept(self) -> None:
        """Accept what the listener has, counting each connection before its handshake."""
        loop = asyncio.get_running_loop()
        connections = cast(set[Any], self.server_state.connections)
        for _ in range(BACKLOG):
            try:
                conn, _peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno not in ACCEPT_ERRNOS:
                    continue  # the peer left before we took it (ECONNABORTED...)
                log.error(
                    "cannot accept connections: %s; trying again in %s s",
                    exc.strerror,
                    ACCEPT_PAUSE,
                )
                self._stop_accepting()
                loop.call_later(ACCEPT_PAUSE, self._accept_again)
                return
            handshake = _Handshake()
            connections.add(handshake)
            if _over_limit(loop, self.limits, len(connections)):
                connections.discard(handshake)
                conn.close()
                continue
            conn.setblocking(False)
            handshake.task = loop.create_task(self._handshake(conn, handshake, loop.time()))

    async def _handshake(self, conn: socket.socket, handshake: _Handshake, since: float) -> None:
        """Run the TLS handshake of `conn`, then hand it to the HTTP protocol."""
        loop = asyncio.get_running_loop()
        tls = self.limits.tls
        assert tls is not None

        def protocol() -> GuardedHttpToolsProtocol:
            return GuardedHttpToolsProtocol(
                self.limits,
                self.server_state,
                self.lifespan.state,
                loop,
                since=since,
                handshake=handshake,
            )

        left = since + self.limits.header_timeout - loop.time()
        try:
            await loop.connect_accepted_socket(
                protocol, conn, ssl=tls, ssl_handshake_timeout=max(left, 0.001)
            )
        except OSError as exc:  # timed out, refused by TLS, or the peer left: the loop closed it
            log.debug("closed a connection whose TLS handshake failed: %r", exc)
        finally:
            cast(set[Any], self.server_state.connections).discard(handshake)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """The server side TLS context of ``--tls-cert`` and ``--tls-key`` (TLS 1.2 or later).

    Raises `InvalidArgError` when they cannot be read or do not belong together.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise InvalidArgError(
            f"cannot use --tls-cert {cert} with --tls-key {key}: {exc}; give a PEM"
            f" certificate and the PEM private key it was made for"
        ) from exc
    return context


def run(
    service: Service,
    spec: ListenSpec,
    *,
    allow_any: bool = False,
    tls: ssl.SSLContext | None = None,
    log_level: str = "warning",
) -> int:
    """Serve the API until a signal; return the exit status (0 after a clean shutdown).

    With `tls` (see `tls_context`) the TCP listener serves HTTPS. Raises
    `InvalidArgError`/`OperationInvalidError` if the socket cannot be opened.
    """
    sock = open_socket(spec, allow_any=allow_any)
    inode = socket_inode(spec)
    try:
        config = _Config(
            create_app(service),
            header_timeout=service.settings.header_timeout,
            max_connections=fit_connections(service.settings.max_connections),
            tls=tls,
            http=GuardedHttpToolsProtocol,
            loop=LOOP_IMPL,
            lifespan="on",
            access_log=False,
            log_level=log_level,
            timeout_graceful_shutdown=CONNECTION_GRACE,
            timeout_keep_alive=KEEP_ALIVE,
            server_header=False,
        )
        server = _Server(config, service, sock)
        scheme = "https" if tls is not None else "http"
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
