"""The remote-driver tests: the real daemon fixtures of tests/daemon, and scripted servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.daemon.conftest import (  # noqa: F401 - fixtures re-exported for this directory
    certificate,
    conn,
    daemon,
    host,
    shared_daemon,
    slow_conn,
)
from tests.drivers.remote.rawserver import Handler, RawServer
from virtjob.drivers.remote.transport import Transport
from virtjob.uri import parse_uri

Serve = Callable[..., RawServer]


@pytest.fixture
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """Start a `RawServer` running a handler (``serve(handler, tcp=..., tls=...)``); every
    server started is closed after the test. Sockets go in a short directory (unix socket
    paths are limited to 107 bytes)."""
    servers: list[RawServer] = []

    def start(handler: Handler, **options: Any) -> RawServer:
        path = str(tmp_path_factory.mktemp("raw") / "s.sock")
        server = RawServer(handler, path, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def transports() -> Iterator[list[Transport]]:
    """Transports the test opens (`open_transport`), closed afterwards."""
    opened: list[Transport] = []
    yield opened
    for transport in opened:
        transport.close()


def open_transport(opened: list[Transport], uri: str) -> Transport:
    """A transport to `uri`, kept in `opened` (the `transports` fixture) to be closed."""
    transport = Transport(parse_uri(uri))
    opened.append(transport)
    return transport
