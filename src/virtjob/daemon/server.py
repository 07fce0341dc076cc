"""Running virtjobd: uvicorn on our own sockets, with graceful shutdown on SIGTERM/SIGINT.

On the first SIGTERM or SIGINT the daemon stops taking new jobs, cancels the running ones and
tells uvicorn to stop (it closes the listening socket, then lets in-flight requests finish;
event streams and long polls end as their jobs reach a final state). Once uvicorn is done,
`Service.finish_shutdown` waits up to the grace period for the jobs to end and records their
final state; then the unix socket file is removed and `run` returns 0. A second signal during
shutdown makes uvicorn drop the remaining connections at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import signal
import socket
import sys
import threading
from collections.abc import Generator

import uvicorn

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
        config = uvicorn.Config(
            create_app(service),
            http=HTTP_IMPL,
            loop=LOOP_IMPL,
            lifespan="on",
            access_log=False,
            log_level=log_level,
            ssl_certfile=tls_cert,
            ssl_keyfile=tls_key,
            timeout_graceful_shutdown=CONNECTION_GRACE,
            timeout_keep_alive=30,
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
