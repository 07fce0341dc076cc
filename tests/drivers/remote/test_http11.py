"""`HTTP11Transport` itself: an httpx transport against a real virtjobd and scripted servers
(its pool, its streamed bodies, what it tells the retry logic, the errors it raises)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.daemon.conftest import SAFETY, DaemonProcess
from tests.drivers.remote.conftest import Serve
from tests.drivers.remote.rawserver import Peer
from virtjob.drivers.remote.http11 import ATTEMPT, Attempt, Body, HTTP11Transport

OK = b'{"ok": true}'


def keep_answering(peer: Peer) -> None:
    """Answer every request with 200 and ``{"ok": true}`` until the client closes."""
    while peer.read_request() is not None:
        peer.answer("200 OK", OK)


@pytest.fixture
def transports() -> Iterator[list[HTTP11Transport]]:
    """Transports the test makes, closed afterwards."""
    made: list[HTTP11Transport] = []
    yield made
    for transport in made:
        transport.close()


def make(
    made: list[HTTP11Transport], path: str, *, max_idle: int = 16, keepalive_expiry: float = 5.0
) -> HTTP11Transport:
    """A transport to the unix socket `path`, closed after the test."""
    transport = HTTP11Transport(uds=path, max_idle=max_idle, keepalive_expiry=keepalive_expiry)
    made.append(transport)
    return transport


def get(transport: HTTP11Transport, target: str = "/v1/ok") -> tuple[httpx.Response, Attempt]:
    """Send a GET through the transport alone; the answer (not read) and its `Attempt`."""
    attempt = Attempt()
    request = httpx.Request("GET", f"http://virtjobd{target}", extensions={ATTEMPT: attempt})
    return transport.handle_request(request), attempt


def test_an_httpx_client_over_it_talks_to_a_real_daemon(
    shared_daemon: DaemonProcess, transports: list[HTTP11Transport]
) -> None:
    transport = make(transports, shared_daemon.socket)
    with httpx.Client(transport=transport, base_url="http://virtjobd") as client:
        attempts = [Attempt() for _ in range(3)]
        for attempt in attempts:
            response = client.get("/v1/version", extensions={ATTEMPT: attempt})
            assert response.status_code == 200
            assert "version" in response.json()
        assert [attempt.reused for attempt in attempts] == [False, True, True]
        assert all(attempt.answered for attempt in attempts)
        missing = client.get("/v1/jobs/0123456789ab")
        assert missing.status_code == 404
        assert missing.json()["code"] == "no-job"
        assert transport.idle_connections == 1


def test_a_body_read_to_its_end_returns_the_connection_and_one_closed_early_drops_it(
    serve: Serve, transports: list[HTTP11Transport]
) -> None:
    more = threading.Event()
    closed: list[bool] = []

    def handler(peer: Peer) -> None:
        while peer.read_request() is not None:
            peer.send_drained(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nabc")
            if len(peer.server.requests) > 1:  # the client stops reading after "abc"
                closed.append(peer.wait_closed())
                return
            assert more.wait(SAFETY)
            peer.send(b"def")

    server = serve(handler)
    transport = make(transports, server.path)
    response, _ = get(transport)
    assert transport.idle_connections == 0, "the body is still being read"
    pieces = iter(response.iter_raw())
    assert next(pieces) == b"abc"
    more.set()
    assert list(pieces) == [b"def"]
    assert transport.idle_connections == 1
    response, attempt = get(transport)
    assert attempt.reused
    response.close()  # "def" was never sent: the connection cannot be reused
    assert transport.idle_connections == 0
    response, attempt = get(transport)
    assert not attempt.reused
    assert next(iter(response.iter_raw())) == b"abc"
    response.close()
    server.close()
    assert closed == [True, True]


def test_an_idle_connection_the_server_closed_is_not_used(
    serve: Serve, transports: list[HTTP11Transport]
) -> None:
    closed = threading.Event()

    def handler(peer: Peer) -> None:
        if peer.number == 1:
            assert peer.read_request() is not None
            peer.answer("200 OK", OK)
            peer.sock.close()
            closed.set()
        else:
            keep_answering(peer)

    server = serve(handler)
    transport = make(transports, server.path)
    assert get(transport)[0].read() == OK
    assert closed.wait(SAFETY)
    response, attempt = get(transport)
    assert response.read() == OK
    assert not attempt.reused, "the closed connection was seen and dropped before use"
    assert server.accepted == 2


def test_idle_connections_are_bounded_and_expire(
    serve: Serve, transports: list[HTTP11Transport]
) -> None:
    arrived = threading.Barrier(3, timeout=SAFETY)

    def handler(peer: Peer) -> None:
        if peer.number <= 3 and peer.read_request() is not None:
            arrived.wait()  # three requests under way at once
            peer.answer("200 OK", OK)
        keep_answering(peer)

    server = serve(handler)
    transport = make(transports, server.path, max_idle=2)

    def one() -> None:
        assert get(transport)[0].read() == OK

    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SAFETY)
    assert server.accepted == 3
    assert transport.idle_connections == 2
    expiring = make(transports, server.path, keepalive_expiry=0.0)
    attempts = [get(expiring)[1] for _ in range(2)]
    assert [attempt.reused for attempt in attempts] == [False, False]
    assert server.accepted == 5


def test_what_it_raises(serve: Serve, transports: list[HTTP11Transport], tmp_path: Path) -> None:
    missing = make(transports, str(tmp_path / "none.sock"))
    with pytest.raises(httpx.ConnectError, match="No such file"):
        get(missing)

    def silent(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.wait_closed()

    server = serve(silent)
    transport = make(transports, server.path)
    request = httpx.Request(
        "GET", "http://virtjobd/v1/x", extensions={"timeout": {"read": 0.1, "connect": 1}}
    )
    with pytest.raises(httpx.ReadTimeout) as caught:
        transport.handle_request(request)
    assert caught.value.request is request
    transport.close()
    with pytest.raises(RuntimeError, match="closed"):
        get(transport)
    with pytest.raises(ValueError, match="either uds or host and port"):
        HTTP11Transport(host="127.0.0.1")


@pytest.mark.parametrize("value", ["a\r\nx-injected: 1", "a\nb", "a\rb", "a\0b"])
def test_a_header_with_cr_lf_or_nul_is_refused(
    serve: Serve, transports: list[HTTP11Transport], value: str
) -> None:
    server = serve(keep_answering)
    transport = make(transports, server.path)
    for headers in ({"authorization": value}, {value: "x"}):
        request = httpx.Request("GET", "http://virtjobd/v1/ok", headers=headers)
        with pytest.raises(httpx.LocalProtocolError, match="holds a CR, LF or NUL") as caught:
            transport.handle_request(request)
        assert value not in str(caught.value), "a header value may be a secret"
    assert get(transport)[0].read() == OK
    assert server.lines() == [b"GET /v1/ok HTTP/1.1"], "only the sound request was sent"


def test_a_body_closed_between_reads_raises_httpx_errors(
    serve: Serve, transports: list[HTTP11Transport]
) -> None:
    """What a reader sees when another thread closes the body between two of its reads (made
    deterministic here by closing it from the same thread): httpx's ReadError, not OSError."""

    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send_drained(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            peer.send(b"3\r\nabc\r\n")  # read by the body, after the head
            peer.wait_closed()

    server = serve(handler)
    transport = make(transports, server.path)
    response, _ = get(transport)
    body = response.stream
    assert isinstance(body, Body)
    pieces = iter(body)
    assert next(pieces) == b"abc"
    body.close()
    with pytest.raises(httpx.ReadError):
        next(pieces)
